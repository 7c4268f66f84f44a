
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


#ifndef _POP3EXT_H_INCLUDED_
#define _POP3EXT_H_INCLUDED_


#include <sys/types.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <errno.h>
#include <signal.h>
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
#include <openssl/ssl.h>

#include "ngx_mail_pop3_ext_model.h"
#include "ngx_mail_pop3_ext_scheme.h"
#include "ngx_mail_pop3_ext_spec.h"


#define POP3EXT_DEFAULT_REDIS     "127.0.0.1:6379"
/* a reply may take long (a big message); timeout= in the spec overrides */
#define POP3EXT_REPLY_TIMEOUT     30000
/* TRYAGAIN, CLUSTERDOWN, a failover: how long to try again, in ms */
#define POP3EXT_RETRY_TIME        5000
#define POP3EXT_REDIRECTS_MAX     16

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

/* admin commands: index entries per HMGET of delivery times */
#define POP3EXT_LIST_BATCH        1000
/* "2026-11-28T21:53:01+01:00", with room for any struct tm */
#define POP3EXT_TIME_LEN          128

/* kick: no session held the maildrop; as pkill(1), "nothing matched" */
#define POP3EXT_EX_NOSESSION      1

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

/*
 * user add: the secret, the mailbox (ARGV[2] "set" with ARGV[3], "del",
 * or "keep"), the retention (ARGV[4] "set" with ARGV[5], "del", or
 * absent), and the end of "disabled", at once.
 */
#define POP3EXT_SCRIPT_USER_SET                                               \
    "redis.call('HSET', KEYS[1], '" P3X_FIELD_SECRET "', ARGV[1])\n"          \
    "if ARGV[2] == 'set' then\n"                                              \
    "  redis.call('HSET', KEYS[1], '" P3X_FIELD_MAILBOX "', ARGV[3])\n"       \
    "elseif ARGV[2] == 'del' then\n"                                          \
    "  redis.call('HDEL', KEYS[1], '" P3X_FIELD_MAILBOX "')\n"                \
    "end\n"                                                                   \
    "if ARGV[4] == 'set' then\n"                                              \
    "  redis.call('HSET', KEYS[1], '" P3X_FIELD_EXPIRE "', ARGV[5])\n"        \
    "elseif ARGV[4] == 'del' then\n"                                          \
    "  redis.call('HDEL', KEYS[1], '" P3X_FIELD_EXPIRE "')\n"                 \
    "end\n"                                                                   \
    "redis.call('HDEL', KEYS[1], '" P3X_FIELD_DISABLED "')\n"                 \
    "return 1\n"


typedef struct pop3ext_scheme_s  pop3ext_scheme_t;

/* writes "{NAME}value" for a password into secret */
typedef int (*pop3ext_make_pt)(const pop3ext_scheme_t *s, const char *pass,
    size_t len, char *secret, size_t size);

/* is an imported value (after "{NAME}") one the module can verify? */
typedef int (*pop3ext_valid_pt)(const pop3ext_scheme_t *s, const char *v);


/* how pop3ext makes and checks one scheme of ngx_mail_pop3_ext_scheme.h */

struct pop3ext_scheme_s {
    p3x_scheme_id_e     id;         /* its entry in the shared table */
    pop3ext_make_pt     make;       /* for P3X_SCHEME_MAKE schemes */
    pop3ext_valid_pt    valid;
    const char         *setting;    /* crypt_gensalt() prefix */
    unsigned long       cost;       /* crypt_gensalt() count; 0: default */
    size_t              max;        /* longest password used in full */
    size_t              len;        /* crypt: length of the hash proper */
    const EVP_MD     *(*md)(void);  /* SSHA: the digest */
    const char         *ids[4];     /* crypt: the hash prefixes accepted */
};


#define pop3ext_scheme_name(s)   (p3x_scheme_table()[(s)->id].name)
#define pop3ext_scheme_flags(s)  (p3x_scheme_table()[(s)->id].flags)


/*
 * A Redis server: a single one, a cluster node, the master a Sentinel
 * named.  Connections are the tool's own sockets (TCP, unix, TLS);
 * hiredis only encodes commands and decodes replies.
 */

typedef struct {
    char                host[POP3EXT_HOST_MAX];  /* or a unix socket path */
    unsigned            port;                    /* 0: unix socket */
    char                name[POP3EXT_HOST_MAX + 16];  /* for messages */
    int                 fd;                      /* -1: not connected */
    SSL                *ssl;
    redisReader        *reader;
    unsigned            dirty:1;     /* wrote; WAIT has not confirmed it */
    unsigned            master:1;    /* cluster: serves slots */
} pop3ext_node_t;


typedef struct {
    const char         *text;        /* the Redis specification */
    p3x_spec_t          spec;

    /* AUTH, NUL-terminated; from the specification or the environment */
    char               *user;
    char               *password;

    const char         *tls_ca;
    const char         *tls_cert;
    const char         *tls_key;
    const char         *tls_name;    /* NULL: the host of each address */
    SSL_CTX            *ssl_ctx;

    unsigned long       connect_ms;
    unsigned long       reply_ms;

    pop3ext_node_t     *nodes;
    unsigned            nnodes;
    unsigned            nalloc;
    unsigned            current;     /* single, sentinel: the node used */
    unsigned short     *slots;       /* cluster: node index + 1, 0: none */

    unsigned            connected:1;
    unsigned            lost_dirty:1;  /* a written connection was lost */
    unsigned            resent:1;    /* the last command may have run twice */
    char                last[POP3EXT_HOST_MAX + 16];  /* its replier */

    /* the command line from the command's name on, for pop3ext_audit() */
    int                 argc;
    char              **argv;
} pop3ext_ctx_t;


/*
 * How messages name the other end of a socket: "redis at 127.0.0.1:6379",
 * "pop3 server [::1]:995", and "redis host \"a.example\"" for a name
 * that does not resolve.
 */

typedef struct {
    const char         *at;          /* before host:port */
    const char         *host;        /* before a host name */
    const char         *hint;        /* after why a certificate failed */
} pop3ext_peer_t;

/* pop3ext_sock_recv(): failed, and said why; the deadline passed */
#define POP3EXT_SOCK_ERROR        (-1)
#define POP3EXT_SOCK_TIMEDOUT     (-2)


/* a mailbox and its keys, as ngx_mail_pop3_ext_model.h names them */

typedef struct {
    char                name[P3X_NAME_MAX + 1];
    char                index[POP3EXT_KEY_MAX];
    char                meta[POP3EXT_KEY_MAX];
    char                time[POP3EXT_KEY_MAX];
    char                lock[POP3EXT_KEY_MAX];
    char                dele[POP3EXT_KEY_MAX];
    char                owner[POP3EXT_KEY_MAX];
    char                last[POP3EXT_KEY_MAX];
    char                msg[POP3EXT_KEY_MAX];     /* a body's, before UID */
    char                dlv[POP3EXT_KEY_MAX];     /* a delivery id's */
} pop3ext_mbox_t;


/* an index read in batches (pop3ext_index_next()) */

typedef struct {
    const char         *key;
    long long           start;
    size_t              batch;
    unsigned            done:1;
} pop3ext_index_t;


/* the delivery times of an index read whole (pop3ext_entry_time()) */

typedef struct {
    const char         *key;         /* the mailbox's time hash */
    redisReply         *index;       /* the entries, as LRANGE gave them */
    redisReply         *batch;       /* times from entry first on, or NULL */
    size_t              first;
} pop3ext_times_t;


/* a batch of keys from SCAN, on the m-th of masters */
typedef int (*pop3ext_scan_pt)(pop3ext_ctx_t *cx, redisReply *keys,
    unsigned m, unsigned masters, void *data);

/* the NAME of a key PREFIX NAME SUFFIX from SCAN, on the m-th of masters */
typedef int (*pop3ext_name_pt)(pop3ext_ctx_t *cx, const char *name,
    redisReply *key, unsigned m, unsigned masters, void *data);


extern const pop3ext_scheme_t  pop3ext_schemes[];


/* pop3ext.c */
void pop3ext_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
int pop3ext_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
int pop3ext_defer_begin(void);
void pop3ext_defer_end(int started, int print);
int pop3ext_key(char *buf, const char *prefix, const char *name,
    const char *suffix);
char *pop3ext_strndup(const char *p, size_t len);
int pop3ext_random(void *buf, size_t len);
unsigned long long pop3ext_clock(clockid_t clock);

/* ms of the monotonic clock, for deadlines; ms since the epoch, for times */
#define pop3ext_now()       pop3ext_clock(CLOCK_MONOTONIC)
#define pop3ext_clock_ms()  pop3ext_clock(CLOCK_REALTIME)

/* pop3ext_redis.c */

/* a command that only reads; one that writes, which wait=N confirms */
#define pop3ext_read(cx, rc, key, ...)                                        \
    pop3ext_command(cx, rc, key, 0, __VA_ARGS__)
#define pop3ext_write(cx, rc, key, ...)                                       \
    pop3ext_command(cx, rc, key, 1, __VA_ARGS__)

int pop3ext_redis_init(pop3ext_ctx_t *cx, const char *text);
int pop3ext_connect(pop3ext_ctx_t *cx);
void pop3ext_disconnect(pop3ext_ctx_t *cx);
int pop3ext_call(pop3ext_ctx_t *cx, const char *key, int write, int argc,
    const char **argv, const size_t *lens, redisReply **rp);
redisReply *pop3ext_command(pop3ext_ctx_t *cx, int *rc, const char *key,
    int write, const char *fmt, ...);
unsigned pop3ext_masters(pop3ext_ctx_t *cx);
redisReply *pop3ext_read_master(pop3ext_ctx_t *cx, int *rc, unsigned m,
    const char *fmt, ...);
int pop3ext_scan_keys(pop3ext_ctx_t *cx, const char *pattern,
    pop3ext_scan_pt handler, void *data);
int pop3ext_exists(pop3ext_ctx_t *cx, const char *key, int *exists);
int pop3ext_check(pop3ext_ctx_t *cx, redisReply *r);
int pop3ext_sync(pop3ext_ctx_t *cx);
unsigned pop3ext_key_slot(const char *key, size_t len);

/* pop3ext_socket.c */
int pop3ext_tls_context(SSL_CTX **ctxp, const char *ca, int verify);
const char *pop3ext_ssl_reason(void);
int pop3ext_sock_connect(const pop3ext_peer_t *peer, const char *name,
    const char *host, unsigned port, unsigned long long deadline, int *fdp);
int pop3ext_sock_tls(const pop3ext_peer_t *peer, const char *name,
    SSL_CTX *ctx, int fd, const char *host, int verify,
    unsigned long long deadline, SSL **sslp);
int pop3ext_sock_wait(int fd, short events, unsigned long long deadline);
int pop3ext_sock_send(const pop3ext_peer_t *peer, const char *name, int fd,
    SSL *ssl, const char *buf, size_t len, unsigned long long deadline);
ssize_t pop3ext_sock_recv(const pop3ext_peer_t *peer, const char *name,
    int fd, SSL *ssl, void *buf, size_t size, unsigned long long deadline);

/* pop3ext_scheme.c */
const pop3ext_scheme_t *pop3ext_scheme(const char *name, size_t len,
    int aliases);
void pop3ext_scheme_list(FILE *f, int makes, int col);
int pop3ext_hash(const pop3ext_scheme_t *s, const char *pass, size_t len,
    char *secret, size_t size);
int pop3ext_import(const pop3ext_scheme_t *s, int given, const char *line,
    char *secret, size_t size);

/* pop3ext_user.c */
int pop3ext_user_name(int argc, char **argv, const char *cmd,
    const char **user);
int pop3ext_read_line(char *buf, size_t size, size_t *len);
int pop3ext_valid_user(const char *name);
int pop3ext_user_record(pop3ext_ctx_t *cx, const char *user,
    redisReply **rp);
int pop3ext_user_exists(pop3ext_ctx_t *cx, const char *user);
int pop3ext_user_field(pop3ext_ctx_t *cx, const char *user,
    const char *field, const char *value);
int pop3ext_user_add(pop3ext_ctx_t *cx, int argc, char **argv);
int pop3ext_user_del(pop3ext_ctx_t *cx, int argc, char **argv);
int pop3ext_user_show(pop3ext_ctx_t *cx, int argc, char **argv);
int pop3ext_user_disable(pop3ext_ctx_t *cx, int argc, char **argv,
    int disable);

/* pop3ext_mailbox.c */
int pop3ext_mailbox(pop3ext_ctx_t *cx, const char *user, char *mbox);
int pop3ext_mbox_keys(pop3ext_mbox_t *mb, const char *name);
int pop3ext_user_mbox(pop3ext_ctx_t *cx, const char *user,
    pop3ext_mbox_t *mb);
int pop3ext_entry(const char *p, size_t len, size_t *uid_len,
    unsigned long long *size);
void pop3ext_index_init(pop3ext_index_t *ix, const char *key, size_t batch);
int pop3ext_index_next(pop3ext_ctx_t *cx, pop3ext_index_t *ix,
    redisReply **rp);
int pop3ext_index_all(pop3ext_ctx_t *cx, const char *index, redisReply **rp,
    size_t *count, unsigned long long *octets);
int pop3ext_times(pop3ext_ctx_t *cx, const char *mtime, redisReply *r,
    size_t first, size_t max, redisReply **tp);
int pop3ext_entry_time(pop3ext_ctx_t *cx, pop3ext_times_t *tm, size_t i,
    unsigned long long *ms, const char **src);
unsigned long long pop3ext_delivery_time(redisReply *t, const char *uid,
    size_t len, const char **src);
int pop3ext_purge(pop3ext_ctx_t *cx, const char *mbox, int scan);
int pop3ext_stat(pop3ext_ctx_t *cx, int argc, char **argv);

/* pop3ext_message.c */
int pop3ext_deliver(pop3ext_ctx_t *cx, int argc, char **argv);
int pop3ext_max_size(size_t *max);
int pop3ext_crlf(u_char **msg, size_t *len, size_t max);

/* pop3ext_import.c */
int pop3ext_import_mail(pop3ext_ctx_t *cx, int argc, char **argv);

/* pop3ext_quota.c */
int pop3ext_quota(pop3ext_ctx_t *cx, int argc, char **argv);
int pop3ext_quota_number(const char *s, int suffix, unsigned long long *v);
int pop3ext_quota_default(const char *opt, unsigned long long *octets,
    unsigned long long *messages);

/* pop3ext_expire.c */
int pop3ext_expire_parse(const char *s, size_t len, unsigned long long *days);
int pop3ext_expire_field(const char *v, char *buf, size_t size,
    const char **field);
int pop3ext_user_set(pop3ext_ctx_t *cx, int argc, char **argv);
int pop3ext_expunge(pop3ext_ctx_t *cx, int argc, char **argv);
/* pop3ext_output.c */
void pop3ext_json_string(FILE *f, const char *s, size_t len);
void pop3ext_json_user(const char *user, const char *mbox);
void pop3ext_time_text(char *buf, unsigned long long ms);
int pop3ext_parse_since(const char *s, unsigned long long now,
    unsigned long long *ms);
void pop3ext_progress(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
void pop3ext_progress_end(void);
int pop3ext_flush(FILE *f);

/* pop3ext_audit.c */
int pop3ext_audit(pop3ext_ctx_t *cx, int argc, char **argv);
int pop3ext_audit_show(pop3ext_ctx_t *cx, int argc, char **argv);

/* pop3ext_admin.c */
int pop3ext_scan_names(pop3ext_ctx_t *cx, const char *prefix,
    const char *suffix, pop3ext_name_pt handler, void *data);
int pop3ext_user_list(pop3ext_ctx_t *cx, int argc, char **argv);
int pop3ext_user_rename(pop3ext_ctx_t *cx, int argc, char **argv);
int pop3ext_mailbox_taken(pop3ext_ctx_t *cx, const char *user);
int pop3ext_mailbox_list(pop3ext_ctx_t *cx, int argc, char **argv);
int pop3ext_who(pop3ext_ctx_t *cx, int argc, char **argv);
int pop3ext_kick(pop3ext_ctx_t *cx, int argc, char **argv);

/* pop3ext_export.c */
int pop3ext_export(pop3ext_ctx_t *cx, int argc, char **argv);


#endif /* _POP3EXT_H_INCLUDED_ */
