
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
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include <argon2.h>
#include <crypt.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

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

/* the parameters "doveadm pw" uses, so that hashes look like Dovecot's */
#define POP3EXT_ARGON2_T          3
#define POP3EXT_ARGON2_M          65536       /* KiB */
#define POP3EXT_ARGON2_P          1
#define POP3EXT_ARGON2_SALT       16
#define POP3EXT_ARGON2_HASH       32
#define POP3EXT_PBKDF2_ROUNDS     5000
#define POP3EXT_PBKDF2_SALT       16
#define POP3EXT_PBKDF2_HASH       20          /* SHA-1 */
#define POP3EXT_PBKDF2_MAX_ROUNDS 10000000    /* what the module accepts */
#define POP3EXT_SSHA_SALT         16
/* the module decodes an SSHA value into 512 octets */
#define POP3EXT_SSHA_MAX          512
#define POP3EXT_CRAM_LEN          64          /* two MD5 states in hex */

/* sets or deletes a field of an existing user record: 1, or 0 if none */
#define POP3EXT_SCRIPT_FIELD                                                  \
    "if redis.call('EXISTS', KEYS[1]) == 0 then\n"                            \
    "  return 0\n"                                                            \
    "end\n"                                                                   \
    "if ARGV[2] then\n"                                                       \
    "  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"                       \
    "else\n"                                                                  \
    "  redis.call('HDEL', KEYS[1], ARGV[1])\n"                                \
    "end\n"                                                                   \
    "return 1\n"


typedef struct pop3ext_scheme_s  pop3ext_scheme_t;

/* writes "{NAME}value" for a password into secret */
typedef int (*pop3ext_make_pt)(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size);

/* is an imported value (after "{NAME}") one the module can verify? */
typedef int (*pop3ext_valid_pt)(const pop3ext_scheme_t *s, const char *v);


struct pop3ext_scheme_s {
    const char         *name;       /* stored as "{NAME}" before the value */
    pop3ext_make_pt     make;       /* NULL: imported with --hash only */
    pop3ext_valid_pt    valid;
    int                 detect;     /* a bare value of its shape selects it */
    const char         *setting;    /* crypt_gensalt() prefix */
    unsigned long       cost;       /* crypt_gensalt() count; 0: default */
    size_t              max;        /* longest password used in full */
    size_t              len;        /* crypt: length of the hash proper */
    const EVP_MD     *(*md)(void);  /* SSHA: the digest */
    const char         *ids[4];     /* crypt: the hash prefixes accepted */
};


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
static int pop3ext_user_record(pop3ext_ctx_t *cx, const char *user,
    redisReply **rp);
static int pop3ext_mailbox(pop3ext_ctx_t *cx, const char *user, char *mbox);
static int pop3ext_entry(const char *p, size_t len, size_t *uid_len,
    unsigned long long *size);
static const pop3ext_scheme_t *pop3ext_scheme(const char *name, size_t len);
static void pop3ext_scheme_list(FILE *f, int makes, int col);
static int pop3ext_read_line(char *buf, size_t size, size_t *len);
static int pop3ext_random(void *buf, size_t len);
static int pop3ext_secret(const pop3ext_scheme_t *s, const char *value,
    char *secret, size_t size);
static int pop3ext_hash(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size);
static int pop3ext_make_crypt(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size);
static int pop3ext_make_argon2id(const pop3ext_scheme_t *s,
    const char *pass, size_t len, char *secret, size_t size);
static int pop3ext_make_pbkdf2(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size);
static int pop3ext_make_ssha(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size);
static int pop3ext_make_cram_md5(const pop3ext_scheme_t *s,
    const char *pass, size_t len, char *secret, size_t size);
static void pop3ext_md5_block(uint32_t st[4], const u_char block[64]);
static int pop3ext_make_plain(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size);
static int pop3ext_valid_crypt(const pop3ext_scheme_t *s, const char *v);
static int pop3ext_valid_argon2id(const pop3ext_scheme_t *s, const char *v);
static int pop3ext_valid_pbkdf2(const pop3ext_scheme_t *s, const char *v);
static int pop3ext_valid_ssha(const pop3ext_scheme_t *s, const char *v);
static int pop3ext_valid_cram_md5(const pop3ext_scheme_t *s, const char *v);
static int pop3ext_valid_plain(const pop3ext_scheme_t *s, const char *v);
static size_t pop3ext_digits(const char *p, unsigned long *value);
static int pop3ext_import(const pop3ext_scheme_t *s, int given,
    const char *line, char *secret, size_t size);
static int pop3ext_max_size(size_t *max);
static int pop3ext_read_message(size_t max, u_char **msg, size_t *len);
static int pop3ext_user_add(pop3ext_ctx_t *cx, int argc, char **argv);
static int pop3ext_user_del(pop3ext_ctx_t *cx, int argc, char **argv);
static int pop3ext_user_show(pop3ext_ctx_t *cx, int argc, char **argv);
static int pop3ext_user_disable(pop3ext_ctx_t *cx, int argc, char **argv,
    int disable);
static int pop3ext_purge(pop3ext_ctx_t *cx, const char *mbox, int scan);
static int pop3ext_scan(pop3ext_ctx_t *cx, const char *prefix);
static int pop3ext_deliver(pop3ext_ctx_t *cx, int argc, char **argv);
static int pop3ext_stat(pop3ext_ctx_t *cx, int argc, char **argv);


#define POP3EXT_B64_CRYPT                                                     \
    "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#define POP3EXT_B64                                                           \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#define POP3EXT_HEX               "0123456789abcdefABCDEF"


/*
 * Dovecot's schemes that the module verifies (ngx_mail_pop3_ext_auth.c).
 * The first entry is the default; add new schemes anywhere before the
 * end.  A bare value (no "{SCHEME}") selects the first "detect" scheme
 * whose shape it has; their shapes do not overlap.
 */

static const pop3ext_scheme_t  pop3ext_schemes[] = {

    { .name = "SHA512-CRYPT", .make = pop3ext_make_crypt,
      .valid = pop3ext_valid_crypt, .detect = 1, .setting = "$6$",
      .len = 86, .ids = { "$6$", NULL } },

    { .name = "SHA256-CRYPT", .make = pop3ext_make_crypt,
      .valid = pop3ext_valid_crypt, .detect = 1, .setting = "$5$",
      .len = 43, .ids = { "$5$", NULL } },

    /* bcrypt silently ignores octets past the 72nd */
    { .name = "BLF-CRYPT", .make = pop3ext_make_crypt,
      .valid = pop3ext_valid_crypt, .detect = 1, .setting = "$2b$",
      .cost = 10, .max = 72, .len = 53,
      .ids = { "$2b$", "$2y$", "$2a$", NULL } },

    { .name = "ARGON2ID", .make = pop3ext_make_argon2id,
      .valid = pop3ext_valid_argon2id, .detect = 1 },

    { .name = "PBKDF2", .make = pop3ext_make_pbkdf2,
      .valid = pop3ext_valid_pbkdf2, .detect = 1 },

    { .name = "SSHA512", .make = pop3ext_make_ssha,
      .valid = pop3ext_valid_ssha, .md = EVP_sha512 },

    { .name = "SSHA256", .make = pop3ext_make_ssha,
      .valid = pop3ext_valid_ssha, .md = EVP_sha256 },

    { .name = "CRAM-MD5", .make = pop3ext_make_cram_md5,
      .valid = pop3ext_valid_cram_md5 },

    { .name = "PLAIN", .make = pop3ext_make_plain,
      .valid = pop3ext_valid_plain },

    /* weak: the module verifies them, so they migrate, but none is made */

    { .name = "MD5-CRYPT", .valid = pop3ext_valid_crypt, .detect = 1,
      .len = 22, .ids = { "$1$", NULL } },

    { .name = "CRYPT", .valid = pop3ext_valid_crypt },

    { .name = NULL }
};


/* names Dovecot also gives to schemes above, accepted with --hash */

static const char  *pop3ext_aliases[][2] = {
    { "CLEAR", "PLAIN" },
    { "CLEARTEXT", "PLAIN" },
    { "DES-CRYPT", "CRYPT" },
    { NULL, NULL }
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
    fputs(
"usage: pop3ext [-r ADDRESS] user add [--scheme SCHEME] [--hash]\n"
"                                     [--mailbox MBOX] USER\n"
"       pop3ext [-r ADDRESS] user del USER\n"
"       pop3ext [-r ADDRESS] user show USER\n"
"       pop3ext [-r ADDRESS] user disable USER\n"
"       pop3ext [-r ADDRESS] user enable USER\n"
"       pop3ext [-r ADDRESS] deliver USER...\n"
"       pop3ext [-r ADDRESS] stat USER\n"
"       pop3ext -h | --help\n"
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
"  stat          print \"COUNT OCTETS\" of the mailbox of USER\n"
"\n"
"  SCHEME     ", stdout);

    pop3ext_scheme_list(stdout, 1, 13);

    fputs(";\n"
"             with --hash also ", stdout);

    pop3ext_scheme_list(stdout, 0, 30);

    fputs(".\n"
"             APOP needs a PLAIN secret, CRAM-MD5 a PLAIN or CRAM-MD5 one;\n"
"             both are password equivalents (PLAIN is the password)\n"
"  ADDRESS    HOST:PORT or unix:PATH; default $POP3EXT_REDIS, else\n"
"             " POP3EXT_DEFAULT_REDIS "\n"
"  POP3EXT_MAX_SIZE  largest message in octets; default 67108864\n"
"  POP3EXT_REDIS_PASSWORD, POP3EXT_REDIS_USER  Redis AUTH, if required\n"
"\n"
"  exit status: 0 ok, 64 usage, 65 bad password, hash or message,\n"
"  67 unknown user, 69 scheme unavailable, 70 internal error,\n"
"  74 I/O error, 75 temporary failure (try again later)\n", stdout);

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


static int pop3ext_auth(pop3ext_ctx_t *cx);


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

    return pop3ext_auth(cx);
}


/*
 * A Redis that requires a password (requirepass, or an ACL user): from
 * the environment, so that it shows in no process list.
 */

static int
pop3ext_auth(pop3ext_ctx_t *cx)
{
    int          rc;
    const char  *user, *password;
    redisReply  *r;

    password = getenv("POP3EXT_REDIS_PASSWORD");
    user = getenv("POP3EXT_REDIS_USER");

    if (password == NULL || password[0] == '\0') {
        return EX_OK;
    }

    if (user != NULL && user[0] != '\0') {
        r = redisCommand(cx->redis, "AUTH %s %s", user, password);

    } else {
        r = redisCommand(cx->redis, "AUTH %s", password);
    }

    rc = pop3ext_check(cx, r);
    if (rc != EX_OK) {
        return rc;
    }

    freeReplyObject(r);

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
 * Reads what a login reads of a user, with the module's own AUTHINFO
 * script: on EX_OK *rp is { secret, mailbox, disabled, failures }, each
 * nil or a string, for the caller to free; an unknown user is EX_NOUSER.
 */

static int
pop3ext_user_record(pop3ext_ctx_t *cx, const char *user, redisReply **rp)
{
    int          rc;
    size_t       i;
    char         key[POP3EXT_KEY_MAX], fkey[POP3EXT_KEY_MAX];
    redisReply  *r;

    if (pop3ext_key(key, P3X_USER_PREFIX, user, P3X_USER_SUFFIX) != EX_OK
        || pop3ext_key(fkey, P3X_FAIL_USER_PREFIX, user, P3X_TAG_CLOSE)
           != EX_OK)
    {
        return EX_SOFTWARE;
    }

    r = pop3ext_command(cx, &rc, "EVAL %s 2 %s %s", P3X_SCRIPT_AUTHINFO,
                        key, fkey);
    if (r == NULL) {
        return rc;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
        goto unexpected;
    }

    for (i = 0; i < 4; i++) {
        if (r->element[i]->type != REDIS_REPLY_NIL
            && r->element[i]->type != REDIS_REPLY_STRING)
        {
            goto unexpected;
        }
    }

    /* a hash without fields does not exist, so all nil is a missing key */

    if (r->element[0]->type == REDIS_REPLY_NIL
        && r->element[1]->type == REDIS_REPLY_NIL
        && r->element[2]->type == REDIS_REPLY_NIL)
    {
        pop3ext_error("unknown user \"%s\"", user);
        freeReplyObject(r);
        return EX_NOUSER;
    }

    *rp = r;

    return EX_OK;

unexpected:

    pop3ext_error("unexpected reply to AUTHINFO for user \"%s\"", user);
    freeReplyObject(r);

    return EX_SOFTWARE;
}


/*
 * Resolves the mailbox of a user: its "mailbox" field if set and not
 * empty, else the user name.  mbox has room for P3X_NAME_MAX + 1 octets.
 */

static int
pop3ext_mailbox(pop3ext_ctx_t *cx, const char *user, char *mbox)
{
    int          rc;
    redisReply  *r, *m;

    rc = pop3ext_user_record(cx, user, &r);
    if (rc != EX_OK) {
        return rc;
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
 * Prints the names of the schemes that make hashes (makes) or that are
 * imported only, comma-separated, wrapped at 76 columns with an indent of
 * 13; col is where the cursor starts.
 */

static void
pop3ext_scheme_list(FILE *f, int makes, int col)
{
    int                      n, first;
    const pop3ext_scheme_t  *s;

    first = 1;

    for (s = pop3ext_schemes; s->name != NULL; s++) {
        if ((s->make != NULL) != (makes != 0)) {
            continue;
        }

        n = (int) strlen(s->name) + (first ? 0 : 2)
            + (s == pop3ext_schemes ? (int) sizeof(" (default)") - 1 : 0);

        if (!first) {
            fputc(',', f);

            if (col + n + 1 > 76) {
                fprintf(f, "\n%13s", "");
                col = 13;
                n--;

            } else {
                fputc(' ', f);
            }
        }

        fprintf(f, "%s%s", s->name, s == pop3ext_schemes ? " (default)" : "");

        col += n;
        first = 0;
    }
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


/* fills buf with random octets from the kernel */

static int
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


/* "{NAME}value" */

static int
pop3ext_secret(const pop3ext_scheme_t *s, const char *value, char *secret,
    size_t size)
{
    int  n;

    n = snprintf(secret, size, "{%s}%s", s->name, value);

    if (n < 0 || (size_t) n >= size) {
        pop3ext_error("the %s secret is too long", s->name);
        return EX_DATAERR;
    }

    return EX_OK;
}


static int
pop3ext_hash(const pop3ext_scheme_t *s, const char *pass, size_t len,
    char *secret, size_t size)
{
    if (s->max != 0 && len > s->max) {
        pop3ext_error("%s uses only the first %zu octets of a password, "
                      "this one has %zu", s->name, s->max, len);
        return EX_DATAERR;
    }

    return s->make(s, pass, len, secret, size);
}


static int
pop3ext_make_crypt(const pop3ext_scheme_t *s, const char *pass, size_t len,
    char *secret, size_t size)
{
    int                  rc, err;
    char                 salt[CRYPT_GENSALT_OUTPUT_SIZE];
    const char          *hash;
    struct crypt_data   *data;

    (void) len;

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
        rc = pop3ext_secret(s, hash, secret, size);
    }

    /* it holds the password and the state derived from it */
    explicit_bzero(data, sizeof(struct crypt_data));
    free(data);

    return rc;
}


/* "$argon2id$v=19$m=65536,t=3,p=1$SALT$HASH", as "doveadm pw" makes it */

static int
pop3ext_make_argon2id(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size)
{
    int      rc, err;
    u_char   salt[POP3EXT_ARGON2_SALT];
    char     encoded[256];

    if (argon2_encodedlen(POP3EXT_ARGON2_T, POP3EXT_ARGON2_M,
                          POP3EXT_ARGON2_P, POP3EXT_ARGON2_SALT,
                          POP3EXT_ARGON2_HASH, Argon2_id)
        > sizeof(encoded))
    {
        pop3ext_error("argon2 hash too long");
        return EX_SOFTWARE;
    }

    rc = pop3ext_random(salt, sizeof(salt));
    if (rc != EX_OK) {
        return rc;
    }

    err = argon2id_hash_encoded(POP3EXT_ARGON2_T, POP3EXT_ARGON2_M,
                                POP3EXT_ARGON2_P, pass, len, salt,
                                sizeof(salt), POP3EXT_ARGON2_HASH, encoded,
                                sizeof(encoded));

    if (err != ARGON2_OK) {
        pop3ext_error("cannot hash the password with %s: %s", s->name,
                      argon2_error_message(err));
        return (err == ARGON2_MEMORY_ALLOCATION_ERROR) ? EX_TEMPFAIL
                                                       : EX_SOFTWARE;
    }

    rc = pop3ext_secret(s, encoded, secret, size);

    explicit_bzero(encoded, sizeof(encoded));

    return rc;
}


/* Dovecot's "$1$SALT$ROUNDS$HEX": PBKDF2-HMAC-SHA1 over the ASCII salt */

static int
pop3ext_make_pbkdf2(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size)
{
    int      rc, n;
    size_t   i;
    u_char   rnd[POP3EXT_PBKDF2_SALT], out[POP3EXT_PBKDF2_HASH];
    char     salt[POP3EXT_PBKDF2_SALT + 1];
    char     value[sizeof("$1$$$") + POP3EXT_PBKDF2_SALT + 10
                   + 2 * POP3EXT_PBKDF2_HASH];

    rc = pop3ext_random(rnd, sizeof(rnd));
    if (rc != EX_OK) {
        return rc;
    }

    /* 64 characters: six random bits each, no bias */

    for (i = 0; i < POP3EXT_PBKDF2_SALT; i++) {
        salt[i] = POP3EXT_B64_CRYPT[rnd[i] & 63];
    }

    salt[i] = '\0';

    if (PKCS5_PBKDF2_HMAC(pass, (int) len, (u_char *) salt,
                          POP3EXT_PBKDF2_SALT, POP3EXT_PBKDF2_ROUNDS,
                          EVP_sha1(), sizeof(out), out)
        != 1)
    {
        pop3ext_error("cannot hash the password with %s", s->name);
        return EX_SOFTWARE;
    }

    n = snprintf(value, sizeof(value), "$1$%s$%d$", salt,
                 POP3EXT_PBKDF2_ROUNDS);

    for (i = 0; i < sizeof(out); i++) {
        n += snprintf(value + n, sizeof(value) - n, "%02x", out[i]);
    }

    rc = pop3ext_secret(s, value, secret, size);

    explicit_bzero(out, sizeof(out));

    return rc;
}


/* base64(HASH(password . salt) . salt) */

static int
pop3ext_make_ssha(const pop3ext_scheme_t *s, const char *pass, size_t len,
    char *secret, size_t size)
{
    int            rc;
    size_t         mdlen;
    u_char         raw[EVP_MAX_MD_SIZE + POP3EXT_SSHA_SALT];
    char           value[4 * ((EVP_MAX_MD_SIZE + POP3EXT_SSHA_SALT + 2) / 3)
                         + 1];
    unsigned int   dlen;
    const EVP_MD  *md;
    EVP_MD_CTX    *ctx;

    md = s->md();
    mdlen = (size_t) EVP_MD_size(md);

    rc = pop3ext_random(raw + mdlen, POP3EXT_SSHA_SALT);
    if (rc != EX_OK) {
        return rc;
    }

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    if (EVP_DigestInit_ex(ctx, md, NULL) != 1
        || EVP_DigestUpdate(ctx, pass, len) != 1
        || EVP_DigestUpdate(ctx, raw + mdlen, POP3EXT_SSHA_SALT) != 1
        || EVP_DigestFinal_ex(ctx, raw, &dlen) != 1
        || dlen != mdlen)
    {
        pop3ext_error("cannot hash the password with %s", s->name);
        rc = EX_SOFTWARE;

    } else {
        (void) EVP_EncodeBlock((u_char *) value, raw,
                               (int) (mdlen + POP3EXT_SSHA_SALT));
        rc = pop3ext_secret(s, value, secret, size);
    }

    EVP_MD_CTX_free(ctx);

    return rc;
}


/*
 * Dovecot's {CRAM-MD5}: the HMAC-MD5 key in the form the HMAC resumes
 * from, the MD5 state after the opad block, then after the ipad block,
 * each as four little-endian words in hex.  No MD5 API exposes its state,
 * hence the block function below; a key longer than a block is its MD5.
 */

static int
pop3ext_make_cram_md5(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size)
{
    int        rc;
    size_t     i, k;
    u_char     key[64], pad[64], out[32];
    char       value[2 * sizeof(out) + 1];
    uint32_t   st[4];

    static const uint32_t  init[4] = {
        0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476
    };

    memset(key, 0, sizeof(key));

    if (len > sizeof(key)) {
        if (EVP_Digest(pass, len, key, NULL, EVP_md5(), NULL) != 1) {
            pop3ext_error("cannot hash the password with %s", s->name);
            return EX_SOFTWARE;
        }

    } else {
        memcpy(key, pass, len);
    }

    for (k = 0; k < 2; k++) {
        for (i = 0; i < sizeof(pad); i++) {
            pad[i] = key[i] ^ (k == 0 ? 0x5c : 0x36);
        }

        memcpy(st, init, sizeof(st));
        pop3ext_md5_block(st, pad);

        for (i = 0; i < 16; i++) {
            out[16 * k + i] = (u_char) (st[i / 4] >> (8 * (i % 4)));
        }
    }

    for (i = 0; i < sizeof(out); i++) {
        snprintf(value + 2 * i, 3, "%02x", out[i]);
    }

    rc = pop3ext_secret(s, value, secret, size);

    explicit_bzero(key, sizeof(key));
    explicit_bzero(pad, sizeof(pad));
    explicit_bzero(out, sizeof(out));
    explicit_bzero(st, sizeof(st));
    explicit_bzero(value, sizeof(value));

    return rc;
}


/* the MD5 compression function (RFC 1321, 3.4) on one 64-octet block */

#define POP3EXT_ROTL(x, n)  (((x) << (n)) | ((x) >> (32 - (n))))

static void
pop3ext_md5_block(uint32_t st[4], const u_char block[64])
{
    int        i, g;
    uint32_t   a, b, c, d, f, t, m[16];

    static const uint32_t  k[64] = {
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee,
        0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
        0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be,
        0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
        0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa,
        0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
        0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
        0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
        0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
        0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
        0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05,
        0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
        0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039,
        0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1,
        0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391
    };

    static const u_char  r[4][4] = {
        { 7, 12, 17, 22 }, { 5, 9, 14, 20 }, { 4, 11, 16, 23 },
        { 6, 10, 15, 21 }
    };

    for (i = 0; i < 16; i++) {
        m[i] = (uint32_t) block[4 * i]
               | (uint32_t) block[4 * i + 1] << 8
               | (uint32_t) block[4 * i + 2] << 16
               | (uint32_t) block[4 * i + 3] << 24;
    }

    a = st[0];
    b = st[1];
    c = st[2];
    d = st[3];

    for (i = 0; i < 64; i++) {
        switch (i / 16) {

        case 0:
            f = (b & c) | (~b & d);
            g = i;
            break;

        case 1:
            f = (d & b) | (~d & c);
            g = (5 * i + 1) % 16;
            break;

        case 2:
            f = b ^ c ^ d;
            g = (3 * i + 5) % 16;
            break;

        default:
            f = c ^ (b | ~d);
            g = (7 * i) % 16;
            break;
        }

        t = d;
        d = c;
        c = b;
        f += a + k[i] + m[g];
        b += POP3EXT_ROTL(f, r[i / 16][i % 4]);
        a = t;
    }

    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;

    explicit_bzero(m, sizeof(m));
}


static int
pop3ext_make_plain(const pop3ext_scheme_t *s, const char *pass, size_t len,
    char *secret, size_t size)
{
    (void) len;

    return pop3ext_secret(s, pass, secret, size);
}


/*
 * The shapes of imported values, as the module reads them.  Crypt:
 * "$ID$[rounds=N$]SALT$HASH" (bcrypt "$2b$NN$" and 53 characters) with
 * a HASH of s->len characters, and a setting libxcrypt knows.
 */

static int
pop3ext_valid_crypt(const pop3ext_scheme_t *s, const char *v)
{
    int          n;
    size_t       i, id;
    const char  *p, *h;

    for (p = v; *p != '\0'; p++) {
        if ((u_char) *p < 0x21 || (u_char) *p > 0x7e) {
            return 0;
        }
    }

    if (s->ids[0] != NULL) {
        for (i = 0; s->ids[i] != NULL; i++) {
            if (strncmp(v, s->ids[i], strlen(s->ids[i])) == 0) {
                break;
            }
        }

        if (s->ids[i] == NULL) {
            return 0;
        }

        id = strlen(s->ids[i]);

        if (strncmp(v, "$2", 2) == 0) {
            if (pop3ext_digits(v + id, NULL) != 2 || v[id + 2] != '$') {
                return 0;
            }

            h = v + id + 3;

        } else {
            h = strrchr(v, '$') + 1;

            /* a salt of one character at least */

            if ((size_t) (h - v) < id + 2) {
                return 0;
            }
        }

        if (strlen(h) != s->len
            || strspn(h, POP3EXT_B64_CRYPT) != s->len)
        {
            return 0;
        }
    }

    n = crypt_checksalt(v);

    return n == CRYPT_SALT_OK || n == CRYPT_SALT_METHOD_LEGACY;
}


/* "$argon2id$[v=19$]m=M,t=T,p=P$SALT$HASH", SALT and HASH unpadded base64 */

static int
pop3ext_valid_argon2id(const pop3ext_scheme_t *s, const char *v)
{
    size_t  n;

    (void) s;

    if (strncmp(v, "$argon2id$", 10) != 0) {
        return 0;
    }

    v += 10;

    if (strncmp(v, "v=", 2) == 0) {
        n = pop3ext_digits(v + 2, NULL);

        if (n == 0 || v[2 + n] != '$') {
            return 0;
        }

        v += 2 + n + 1;
    }

    if (strncmp(v, "m=", 2) != 0 || (n = pop3ext_digits(v + 2, NULL)) == 0) {
        return 0;
    }

    v += 2 + n;

    if (strncmp(v, ",t=", 3) != 0 || (n = pop3ext_digits(v + 3, NULL)) == 0) {
        return 0;
    }

    v += 3 + n;

    if (strncmp(v, ",p=", 3) != 0 || (n = pop3ext_digits(v + 3, NULL)) == 0) {
        return 0;
    }

    v += 3 + n;

    if (*v++ != '$' || (n = strspn(v, POP3EXT_B64)) == 0) {
        return 0;
    }

    v += n;

    if (*v++ != '$' || (n = strspn(v, POP3EXT_B64)) == 0) {
        return 0;
    }

    return v[n] == '\0';
}


/* "$1$SALT$ROUNDS$HEX", HEX of 20 octets */

static int
pop3ext_valid_pbkdf2(const pop3ext_scheme_t *s, const char *v)
{
    size_t          n;
    const char     *p;
    unsigned long   rounds;

    (void) s;

    if (strncmp(v, "$1$", 3) != 0) {
        return 0;
    }

    for (p = v + 3; *p != '$'; p++) {
        if ((u_char) *p < 0x21 || (u_char) *p > 0x7e) {
            return 0;
        }
    }

    if (p == v + 3) {
        return 0;
    }

    p++;

    n = pop3ext_digits(p, &rounds);

    if (n == 0 || p[n] != '$' || rounds == 0
        || rounds > POP3EXT_PBKDF2_MAX_ROUNDS)
    {
        return 0;
    }

    p += n + 1;

    return strlen(p) == 2 * POP3EXT_PBKDF2_HASH
           && strspn(p, POP3EXT_HEX) == 2 * POP3EXT_PBKDF2_HASH;
}


/* padded base64 of the digest and a salt of at least one octet */

static int
pop3ext_valid_ssha(const pop3ext_scheme_t *s, const char *v)
{
    size_t  len, n, pad;

    len = strlen(v);
    n = strspn(v, POP3EXT_B64);

    pad = len - n;

    if (len % 4 != 0 || pad > 2 || strspn(v + n, "=") != pad) {
        return 0;
    }

    n = len / 4 * 3;

    return n <= POP3EXT_SSHA_MAX && n - pad > (size_t) EVP_MD_size(s->md());
}


static int
pop3ext_valid_cram_md5(const pop3ext_scheme_t *s, const char *v)
{
    (void) s;

    return strlen(v) == POP3EXT_CRAM_LEN
           && strspn(v, POP3EXT_HEX) == POP3EXT_CRAM_LEN;
}


static int
pop3ext_valid_plain(const pop3ext_scheme_t *s, const char *v)
{
    (void) s;
    (void) v;

    return 1;
}


/* the length of the initial run of 1 to 9 digits, and its value */

static size_t
pop3ext_digits(const char *p, unsigned long *value)
{
    size_t          n;
    unsigned long   v;

    v = 0;

    for (n = 0; p[n] >= '0' && p[n] <= '9'; n++) {
        if (n == 9) {
            return 0;
        }

        v = v * 10 + (p[n] - '0');
    }

    if (value != NULL) {
        *value = v;
    }

    return n;
}


/*
 * --hash: the line is "{SCHEME}HASH" or HASH, made elsewhere, and is
 * stored as it is.  A "{SCHEME}" prefix selects the scheme unless
 * --scheme was given; a bare HASH takes the scheme given, else the one
 * its shape names.  The value must have the shape the module verifies,
 * so that a password given by mistake is not stored as a hash nobody can
 * log in with.
 */

static int
pop3ext_import(const pop3ext_scheme_t *s, int given, const char *line,
    char *secret, size_t size)
{
    size_t                   i;
    const char              *p, *hash;
    const pop3ext_scheme_t  *t;

    hash = line;

    if (line[0] == '{' && (p = strchr(line, '}')) != NULL) {
        t = pop3ext_scheme(line + 1, p - line - 1);

        /* Dovecot's other names of two of them */

        for (i = 0; t == NULL && pop3ext_aliases[i][0] != NULL; i++) {
            if (strlen(pop3ext_aliases[i][0]) == (size_t) (p - line - 1)
                && strncasecmp(pop3ext_aliases[i][0], line + 1,
                               p - line - 1) == 0)
            {
                t = pop3ext_scheme(pop3ext_aliases[i][1],
                                   strlen(pop3ext_aliases[i][1]));
            }
        }

        if (t == NULL) {
            pop3ext_error("the module does not verify the scheme %.*s",
                          (int) (p - line + 1), line);
            return EX_DATAERR;
        }

        if (given && t != s) {
            pop3ext_error("the hash is {%s}, not {%s}", t->name, s->name);
            return EX_DATAERR;
        }

        s = t;
        hash = p + 1;

    } else if (!given) {
        for (t = pop3ext_schemes; t->name != NULL; t++) {
            if (t->detect && t->valid(t, hash)) {
                break;
            }
        }

        if (t->name == NULL) {
            pop3ext_error("cannot tell the scheme of this hash: give it as "
                          "{SCHEME}HASH or with --scheme");
            return EX_DATAERR;
        }

        s = t;
    }

    if (hash[0] == '\0') {
        pop3ext_error("empty hash");
        return EX_DATAERR;
    }

    if (!s->valid(s, hash)) {
        pop3ext_error("this is not a valid %s hash", s->name);
        return EX_DATAERR;
    }

    return pop3ext_secret(s, hash, secret, size);
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


/*
 * The secret, the mailbox if given, and the end of "disabled" are written
 * in one transaction: a new password never leaves the old "disabled".
 */

static int
pop3ext_user_add(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                      i, rc, hash, given, nhset, nhdel;
    void                    *reply;
    size_t                   len, k;
    const char              *user, *name, *mbox, *hset[6], *hdel[4];
    redisReply              *r;
    const pop3ext_scheme_t  *s;
    char                     key[POP3EXT_KEY_MAX];
    char                     line[POP3EXT_LINE_MAX + 3];
    char                     secret[POP3EXT_SECRET_MAX];

    s = pop3ext_schemes;
    given = 0;
    hash = 0;
    mbox = NULL;

    for (i = 0; i < argc; i++) {

        if (strcmp(argv[i], "--hash") == 0) {
            hash = 1;
            continue;
        }

        if (strcmp(argv[i], "--mailbox") == 0) {
            if (++i == argc) {
                return pop3ext_usage_error("--mailbox needs an MBOX");
            }

            mbox = argv[i];
            continue;
        }

        if (strncmp(argv[i], "--mailbox=", 10) == 0) {
            mbox = argv[i] + 10;
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

    /* an empty MBOX is the user's own mailbox: the field goes */

    if (mbox != NULL && mbox[0] != '\0'
        && !p3x_valid_name((const u_char *) mbox, strlen(mbox)))
    {
        pop3ext_error("invalid mailbox name: it must be 1 to %d octets, "
                      "without spaces, control characters or braces",
                      P3X_NAME_MAX);
        return EX_USAGE;
    }

    /* found before stdin is read */

    if (!hash && s->make == NULL) {
        pop3ext_error("%s is too weak to make new hashes; it is accepted "
                      "with --hash only, to import old ones", s->name);
        return EX_USAGE;
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

    hset[0] = "HSET";
    hset[1] = key;
    hset[2] = P3X_FIELD_SECRET;
    hset[3] = secret;
    nhset = 4;

    hdel[0] = "HDEL";
    hdel[1] = key;
    hdel[2] = P3X_FIELD_DISABLED;
    nhdel = 3;

    if (mbox != NULL && mbox[0] != '\0') {
        hset[nhset++] = P3X_FIELD_MAILBOX;
        hset[nhset++] = mbox;

    } else if (mbox != NULL) {
        hdel[nhdel++] = P3X_FIELD_MAILBOX;
    }

    if (redisAppendCommand(cx->redis, "MULTI") != REDIS_OK
        || redisAppendCommandArgv(cx->redis, nhset, hset, NULL) != REDIS_OK
        || redisAppendCommandArgv(cx->redis, nhdel, hdel, NULL) != REDIS_OK
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
 * Prints what a login reads of a user, with the module's own AUTHINFO
 * script (it only reads): the scheme of the secret (never the secret),
 * the mailbox, the disabled flag as the module reads it, and the failed
 * logins counted against the name.
 */

static int
pop3ext_user_show(pop3ext_ctx_t *cx, int argc, char **argv)
{
    int                      rc;
    size_t                   i;
    const char              *user, *p, *scheme, *note, *methods;
    redisReply              *r, *e;
    const pop3ext_scheme_t  *s;
    char                     mbox[P3X_NAME_MAX + 1];
    char                     name[64];

    rc = pop3ext_user_name(argc, argv, "user show", &user);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        return rc;
    }

    rc = pop3ext_user_record(cx, user, &r);
    if (rc != EX_OK) {
        return rc;
    }

    /* the scheme, as ngx_p3x_auth_split() and the scheme table read it */

    e = r->element[0];
    note = "";
    methods = "password";

    if (e->type == REDIS_REPLY_NIL || e->len == 0) {
        scheme = "none";
        note = " (no secret: cannot log in)";
        methods = "none";

    } else if (e->str[0] != '{') {
        scheme = "CRYPT";

    } else if ((p = memchr(e->str, '}', e->len)) == NULL) {
        scheme = "invalid";
        note = " (not verified by the module: cannot log in)";
        methods = "none";

    } else {
        s = pop3ext_scheme(e->str + 1, p - e->str - 1);

        if (s != NULL) {
            scheme = s->name;

            if (strcmp(s->name, "PLAIN") == 0) {
                methods = "password, APOP, CRAM-MD5";

            } else if (strcmp(s->name, "CRAM-MD5") == 0) {
                methods = "password, CRAM-MD5";
            }

        } else {
            /* printable, for the terminal's sake */

            for (i = 0; i + 1 < sizeof(name) && e->str + 1 + i < p; i++) {
                name[i] = (e->str[1 + i] > 0x20 && e->str[1 + i] < 0x7f)
                          ? e->str[1 + i] : '?';
            }

            name[i] = '\0';
            scheme = name;
            note = " (not verified by the module: cannot log in)";
            methods = "none";
        }
    }

    e = r->element[1];

    if (e->type == REDIS_REPLY_STRING && e->len > 0) {
        if (!p3x_valid_name((u_char *) e->str, e->len)) {
            memcpy(mbox, "invalid (cannot log in)",
                   sizeof("invalid (cannot log in)"));

        } else {
            memcpy(mbox, e->str, e->len);
            mbox[e->len] = '\0';
        }

    } else {
        memcpy(mbox, user, strlen(user) + 1);
    }

    e = r->element[2];

    printf("user: %s\n"
           "scheme: %s%s\n"
           "methods: %s\n"
           "mailbox: %s\n"
           "disabled: %s\n",
           user, scheme, note, methods, mbox,
           (e->type == REDIS_REPLY_STRING && e->len > 0
            && !(e->len == 1 && e->str[0] == '0')) ? "yes" : "no");

    e = r->element[3];

    if (e->type == REDIS_REPLY_STRING && e->len > 0
        && strspn(e->str, "0123456789") == e->len)
    {
        printf("failures: %s\n", e->str);

    } else {
        printf("failures: 0\n");
    }

    if (fflush(stdout) == EOF) {
        pop3ext_error("cannot write: %s", strerror(errno));
        rc = EX_IOERR;
    }

    /* the reply holds the secret, which may be a PLAIN password */

    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0
        && r->element[0]->type == REDIS_REPLY_STRING)
    {
        explicit_bzero(r->element[0]->str, r->element[0]->len);
    }

    freeReplyObject(r);

    return rc;
}


/* sets or deletes "disabled" of an existing user */

static int
pop3ext_user_disable(pop3ext_ctx_t *cx, int argc, char **argv, int disable)
{
    int          rc;
    const char  *user;
    redisReply  *r;
    char         key[POP3EXT_KEY_MAX];

    rc = pop3ext_user_name(argc, argv,
                           disable ? "user disable" : "user enable", &user);
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

    if (disable) {
        r = pop3ext_command(cx, &rc, "EVAL %s 1 %s %s 1",
                            POP3EXT_SCRIPT_FIELD, key, P3X_FIELD_DISABLED);

    } else {
        r = pop3ext_command(cx, &rc, "EVAL %s 1 %s %s",
                            POP3EXT_SCRIPT_FIELD, key, P3X_FIELD_DISABLED);
    }

    if (r == NULL) {
        return rc;
    }

    if (r->type != REDIS_REPLY_INTEGER) {
        pop3ext_error("unexpected reply to EVAL");
        rc = EX_SOFTWARE;

    } else if (r->integer == 0) {
        pop3ext_error("unknown user \"%s\"", user);
        rc = EX_NOUSER;
    }

    freeReplyObject(r);

    return rc;
}


/*
 * Deletes the mailbox first and the user last, so that a run that failed
 * half way can be repeated; a second pass then removes what a concurrent
 * delivery stored before the user key went away.
 *
 * The mailbox deleted is the one named USER, even when other users read
 * it through their "mailbox" field: finding them would take a SCAN of
 * every user record.  A mailbox that USER reads through its own "mailbox"
 * field is kept, since others may share it.  Both are in the usage text.
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
    int                 i, j, n, rc, tries, nkeys;
    char              (*mbox)[P3X_NAME_MAX + 1];
    u_char             *msg, rnd[6], digest[32];
    char                uid[P3X_UID_NEW_LEN + 1], ttl[32];
    size_t              len, max;
    redisReply         *r;
    struct timespec     ts;
    const char         *av[10], *id;
    size_t              avlen[10];
    unsigned long long  ms;
    char                index[POP3EXT_KEY_MAX], body[POP3EXT_KEY_MAX];
    char                dlv[POP3EXT_KEY_MAX], hex[2 * 32 + 1];

    id = NULL;

    while (argc > 0 && argv[0][0] == '-') {

        if (strcmp(argv[0], "--") == 0) {
            argc--;
            argv++;
            break;
        }

        if (strcmp(argv[0], "--id") == 0 && argc > 1 && argv[1][0]) {
            id = argv[1];
            argc -= 2;
            argv += 2;
            continue;
        }

        return pop3ext_usage_error("deliver: unknown option \"%s\"",
                                   argv[0]);
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

    /* the delivery id names a key of each mailbox by its SHA-256 */

    if (id) {
        SHA256((const u_char *) id, strlen(id), digest);

        for (i = 0; i < 32; i++) {
            sprintf(hex + 2 * i, "%02x", digest[i]);
        }
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

    nkeys = id ? 3 : 2;
    snprintf(ttl, sizeof(ttl), "%d", P3X_DELIVERY_TTL);

    av[0] = "EVAL";
    avlen[0] = sizeof("EVAL") - 1;
    av[1] = P3X_SCRIPT_DELIVER;
    avlen[1] = sizeof(P3X_SCRIPT_DELIVER) - 1;
    av[2] = id ? "3" : "2";
    avlen[2] = 1;
    av[3] = index;
    av[4] = body;

    if (id) {
        av[5] = dlv;
    }

    av[3 + nkeys] = (const char *) msg;
    avlen[3 + nkeys] = len;
    av[4 + nkeys] = uid;
    avlen[4 + nkeys] = P3X_UID_NEW_LEN;
    av[5 + nkeys] = ttl;
    avlen[5 + nkeys] = strlen(ttl);

    for (j = 0; j < n; j++) {

        for (tries = 0; /* void */; tries++) {

            if (pop3ext_random(rnd, sizeof(rnd)) != EX_OK) {
                rc = EX_UNAVAILABLE;
                goto done;
            }

            clock_gettime(CLOCK_REALTIME, &ts);
            ms = (unsigned long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;

            p3x_uid_make((u_char *) uid, ms, rnd);
            uid[P3X_UID_NEW_LEN] = '\0';

            if (pop3ext_key(index, P3X_MBOX_PREFIX, mbox[j],
                            P3X_INDEX_SUFFIX) != EX_OK
                || pop3ext_key(body, P3X_MBOX_PREFIX, mbox[j],
                               P3X_MSG_SUFFIX) != EX_OK
                || (id && pop3ext_key(dlv, P3X_MBOX_PREFIX, mbox[j],
                                      P3X_DLV_SUFFIX) != EX_OK)
                || strlen(body) + P3X_UID_NEW_LEN >= POP3EXT_KEY_MAX
                || (id && strlen(dlv) + 2 * 32 >= POP3EXT_KEY_MAX))
            {
                rc = EX_SOFTWARE;
                goto done;
            }

            strcat(body, uid);

            if (id) {
                strcat(dlv, hex);
            }

            avlen[3] = strlen(index);
            avlen[4] = strlen(body);

            if (id) {
                avlen[5] = strlen(dlv);
            }

            r = redisCommandArgv(cx->redis, 6 + nkeys, av, avlen);

            /* a UID that is taken already: another one, a few times */

            if (r && r->type == REDIS_REPLY_ERROR && tries < 3
                && strncmp(r->str, "EXISTS", 6) == 0)
            {
                freeReplyObject(r);
                continue;
            }

            break;
        }

        rc = pop3ext_check(cx, r);
        if (rc != EX_OK) {
            goto done;
        }

        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
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
