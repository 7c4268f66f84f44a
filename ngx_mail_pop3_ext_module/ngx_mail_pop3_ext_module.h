
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * Types shared by the files of the module.  Each file holds one concern,
 * and calls go one way, down this list:
 *
 *   _module.c       configuration, directives, worker start
 *   _session.c      a session's life: events, the command loop, the
 *                   command table, closing; CAPA and QUIT
 *   _login.c        the AUTHORIZATION state: USER/PASS, APOP, SASL, STLS
 *   _transaction.c  the TRANSACTION and UPDATE states: STAT ... QUIT
 *   _output.c       the reply writer: buffering, flow control, bodies
 *   _ssl.c          TLS glue: STLS, secure channels, client certificates
 *   _auth.c         credential checks in a thread pool
 *   _limit.c        cluster-wide abuse limits: login attempts, slots
 *   _store.c        the mailbox store: keys and scripts of the model
 *   _retention.c    EXPIRE and LOGIN-DELAY (RFC 2449): what CAPA says,
 *                   the user's retention, EXPIRE 0 at UPDATE
 *   _redis.c        Redis requests and connections owned by nginx
 *   _redis_topology.c  standalone, Sentinel or Cluster routing
 *   _script.c       the model's server-side scripts, by name
 *   _io.c           buffered I/O on a client connection: the input and
 *                   output buffers of the POP3 and the LMTP session
 *   _parse.c, _sasl.c  command and SASL decoding (pure)
 *
 * Beside them, called by hooks (one call per event) and calling nothing
 * of the session's:
 *
 *   _metrics.c      counters in a shared memory zone, the end of a
 *                   session (ngx_mail_pop3_ext_metrics_module)
 *   _session_log.c  one line per session (pop3_ext_session_log)
 *   ngx_http_pop3_ext_metrics_module.c  the zone over HTTP, for
 *                   Prometheus (a second module in the same .so)
 *
 * LMTP, a second protocol of the same module, has files of its own
 * (ngx_mail_pop3_ext_lmtp.h); it shares the Redis client and scripts,
 * the connection I/O (_io.c) and the STARTTLS glue (_ssl.c).
 */


#ifndef _NGX_MAIL_POP3_EXT_MODULE_H_INCLUDED_
#define _NGX_MAIL_POP3_EXT_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_thread_pool.h>
#include <ngx_mail.h>

#include <hiredis/hiredis.h>

#include "ngx_mail_pop3_ext_model.h"
#include "ngx_mail_pop3_ext_io.h"
#include "ngx_mail_pop3_ext_parse.h"
#include "ngx_mail_pop3_ext_sasl.h"
#include "ngx_mail_pop3_ext_metrics.h"


#define NGX_P3X_VERSION     "0.3.0"

/* index entries a request reads at login: the LOCK script, each LRANGE */
#define NGX_P3X_INDEX_CHUNK  4096

/* the output buffer of short replies and listings */
#define NGX_P3X_OUT_SMALL   4096

/* room for one reply line; checked before each command */
#define NGX_P3X_REPLY_ROOM  1024

/* a retention of "never": longer than any number of days */
#define NGX_P3X_EXPIRE_NEVER  NGX_MAX_INT_T_VALUE


typedef struct ngx_p3x_redis_s         ngx_p3x_redis_t;
typedef struct ngx_p3x_redis_worker_s  ngx_p3x_redis_worker_t;
typedef struct ngx_p3x_rconn_s         ngx_p3x_rconn_t;
typedef struct ngx_p3x_rreq_s          ngx_p3x_rreq_t;
typedef struct ngx_p3x_ctx_s           ngx_p3x_ctx_t;
typedef struct ngx_p3x_auth_task_s     ngx_p3x_auth_task_t;


/*
 * What a Redis request's handler learns (see _redis.c): the reply, or
 * that the request never ran, or that it may have run.
 */
#define NGX_P3X_REDIS_OK        0
#define NGX_P3X_REDIS_NOTRUN    1
#define NGX_P3X_REDIS_UNKNOWN   2
#define NGX_P3X_REDIS_UNACKED   3       /* ran; replicas did not confirm */

/* reply is NULL unless status is NGX_P3X_REDIS_OK or _UNACKED */
typedef void (*ngx_p3x_redis_handler_pt)(void *data, redisReply *reply,
    ngx_uint_t status);


/* a request as its caller describes it */
typedef struct {
    ngx_p3x_redis_t          *redis;
    ngx_queue_t              *owner;        /* cancelled with its owner */
    ngx_p3x_redis_handler_pt  handler;      /* NULL: nobody waits */
    void                     *data;
    ngx_uint_t                tag;          /* cancelled by tag */
    ngx_uint_t                affinity;     /* same: same connection */
    ngx_msec_t                timeout;      /* 0: the Redis's own */
    ngx_int_t                 script;       /* -1, or for EVALSHA */
    ngx_int_t                 key;          /* argv index of the key that
                                               routes it; 0: none */
    unsigned                  idempotent:1; /* may run twice, harmlessly */
    unsigned                  ack:1;        /* WAIT with wait= */
} ngx_p3x_rcall_t;

#define NGX_P3X_TAG_ANY     ((ngx_uint_t) -1)


typedef struct {
    ngx_str_t                 name;
    ngx_str_t                 source;
    u_char                    sha1[40];
} ngx_p3x_script_t;


typedef enum {
    NGX_P3X_SCRIPT_LOCK = 0,
    NGX_P3X_SCRIPT_REFRESH,
    NGX_P3X_SCRIPT_MARK,
    NGX_P3X_SCRIPT_MARKS,
    NGX_P3X_SCRIPT_COMMIT,
    NGX_P3X_SCRIPT_RELEASE,
    NGX_P3X_SCRIPT_AUTHINFO,
    NGX_P3X_SCRIPT_FAIL,
    NGX_P3X_SCRIPT_REFUND,
    NGX_P3X_SCRIPT_CONN,
    NGX_P3X_SCRIPT_STAGE,           /* LMTP (_lmtp_data.c) */
    NGX_P3X_SCRIPT_STORE,
    NGX_P3X_SCRIPTS
} ngx_p3x_script_e;


#define NGX_P3X_REDIS_SINGLE    0
#define NGX_P3X_REDIS_CLUSTER   1
#define NGX_P3X_REDIS_SENTINEL  2


/*
 * One configured pop3_ext_redis: a standalone server, Cluster seeds or
 * Sentinels.  Servers that name the same one share it; its connections
 * and routes are per worker (worker).
 */
struct ngx_p3x_redis_s {
    ngx_str_t                 name;           /* as configured */
    ngx_uint_t                mode;
    ngx_array_t              *addrs;          /* ngx_addr_t */
    ngx_str_t                 sentinel_name;

    ngx_uint_t                nconns;
    ngx_msec_t                timeout;
    ngx_uint_t                wait;
    ngx_msec_t                wait_timeout;
    ngx_str_t                 user;           /* AUTH, if set */
    ngx_str_t                 password;

    unsigned                  tls:1;
    unsigned                  ssl_verify:1;
    unsigned                  ssl_server_name:1;
#if (NGX_SSL)
    ngx_ssl_t                *ssl;
#endif
    ngx_str_t                 ssl_name;

    ngx_p3x_redis_worker_t   *worker;
};


typedef struct {
    ngx_array_t               redis;          /* ngx_p3x_redis_t * */
    ngx_int_t                 auth_concurrency;   /* NGX_CONF_UNSET: auto */

    /* TLS to Redis, for every pop3_ext_redis with "tls" */
    ngx_str_t                 redis_ssl_trusted;
    ngx_str_t                 redis_ssl_certificate;
    ngx_str_t                 redis_ssl_certificate_key;
    ngx_str_t                 redis_ssl_name;
    ngx_flag_t                redis_ssl_verify;
    ngx_flag_t                redis_ssl_server_name;
#if (NGX_SSL)
    ngx_ssl_t                *redis_ssl;
#endif
} ngx_mail_pop3_ext_main_conf_t;


#define NGX_P3X_AUTH_USER       0x0040    /* 0x0001 is NGX_CONF_BITMASK_SET */
#define NGX_P3X_AUTH_PLAIN      0x0002
#define NGX_P3X_AUTH_LOGIN      0x0004
#define NGX_P3X_AUTH_CRAM_MD5   0x0008
#define NGX_P3X_AUTH_APOP       0x0010
#define NGX_P3X_AUTH_EXTERNAL   0x0020

/* the mechanisms that send a password as it is */
#define NGX_P3X_AUTH_PLAINTEXT                                                \
    (NGX_P3X_AUTH_USER|NGX_P3X_AUTH_PLAIN|NGX_P3X_AUTH_LOGIN)

#define NGX_P3X_PLAINTEXT_SECURE  0
#define NGX_P3X_PLAINTEXT_ALWAYS  1


typedef struct {
    ngx_p3x_redis_t          *redis;

    ngx_msec_t                idle_timeout;
    ngx_msec_t                login_timeout;
    ngx_msec_t                login_delay;    /* LOGIN-DELAY, 0: none */
    ngx_int_t                 expire;         /* days, or _EXPIRE_NEVER */
    ngx_int_t                 expire_user_min;  /* the least a user may
                                                 have, for CAPA */
    ngx_msec_t                lock_ttl;
    ngx_msec_t                lock_refresh;   /* at most lock_ttl / 3 */

    ngx_uint_t                auth_methods;
    ngx_uint_t                plaintext;
    ngx_array_t              *secure_networks;  /* ngx_cidr_t */

    ngx_msec_t                auth_fail_delay;
    ngx_msec_t                auth_fail_delay_max;
    ngx_uint_t                auth_block_addr;
    ngx_uint_t                auth_block_user;
    ngx_msec_t                auth_block_time;
    ngx_uint_t                max_auth_attempts;

    ngx_uint_t                max_conn_per_addr;
    ngx_uint_t                max_conn_per_user;

    size_t                    chunk_size;
    size_t                    line_max;
    size_t                    sasl_line_max;

    ngx_uint_t                max_commands;

    ngx_str_t                 thread_pool_name;
    ngx_thread_pool_t        *thread_pool;
} ngx_mail_pop3_ext_srv_conf_t;


typedef enum {
    ngx_p3x_state_auth = 0,
    ngx_p3x_state_trans,
    ngx_p3x_state_update,
    ngx_p3x_state_closing
} ngx_p3x_state_e;


/* one message of the maildrop as it was at login */
typedef struct {
    u_char                   *uid;
    uint32_t                  size;
    uint8_t                   uid_len;
    uint8_t                   deleted;
    uint8_t                   retrieved;      /* a whole RETR: EXPIRE 0 */
} ngx_p3x_msg_t;


typedef enum {
    ngx_p3x_auth_password = 0,     /* USER/PASS, AUTH PLAIN, AUTH LOGIN */
    ngx_p3x_auth_apop,
    ngx_p3x_auth_cram_md5,
    ngx_p3x_auth_external
} ngx_p3x_auth_method_e;


/* the SASL exchange in progress: the next line is a response */
typedef enum {
    ngx_p3x_sasl_wait_none = 0,
    ngx_p3x_sasl_wait_plain,
    ngx_p3x_sasl_wait_login_user,
    ngx_p3x_sasl_wait_login_pass,
    ngx_p3x_sasl_wait_cram_md5,
    ngx_p3x_sasl_wait_external
} ngx_p3x_sasl_e;


/* what the writer does once the output buffer has drained */
typedef enum {
    ngx_p3x_stream_none = 0,
    ngx_p3x_stream_list,
    ngx_p3x_stream_uidl,
    ngx_p3x_stream_body
} ngx_p3x_stream_e;


/* what the deletion marks in Redis are known to be */
typedef enum {
    ngx_p3x_marks_known = 0,
    ngx_p3x_marks_unknown,        /* a DELE or RSET may or may not have
                                     run: read them before going on */
    ngx_p3x_marks_reading,
    ngx_p3x_marks_failed          /* reading failed: the next command
                                     gets an error */
} ngx_p3x_marks_e;


struct ngx_p3x_ctx_s {
    ngx_mail_session_t       *session;
    ngx_connection_t         *connection;
    ngx_mail_pop3_ext_srv_conf_t  *conf;

    ngx_p3x_state_e           state;

    ngx_queue_t               requests;       /* this session's, to Redis */
    ngx_event_t               wake;           /* completions post it */

    ngx_buf_t                *in;             /* &in_buf */
    ngx_buf_t                 in_buf;         /* no memory while idle */
    ngx_buf_t                *out;            /* &out_buf, or NULL */
    ngx_buf_t                 out_buf;

    ngx_str_t                 user;
    ngx_str_t                 password;
    ngx_str_t                 mailbox;
    ngx_str_t                 secret;
    ngx_str_t                 key_prefix;     /* "pop3:mbox:{MBOX" */

    u_char                    token[P3X_TOKEN_LEN];

    /* AUTHORIZATION */
    ngx_p3x_auth_method_e     auth_method;
    ngx_p3x_sasl_e            sasl;
    ngx_str_t                 salt;           /* APOP greeting timestamp */
    ngx_str_t                 challenge;      /* CRAM-MD5 or APOP; the
                                                 digest goes in password */
    ngx_str_t                 session_id;     /* "host:pid:connection" */
    ngx_uint_t                auth_attempts;
    ngx_uint_t                login_id;       /* tags the requests of one
                                                 login attempt */
    ngx_uint_t                login_pending;  /* its requests out */
    ngx_msec_t                login_start;
    ngx_int_t                 addr_failures;  /* this attempt included */
    ngx_int_t                 user_failures;
    ngx_event_t               ev_delay;
    ngx_event_t               ev_login;       /* pop3_ext_login_timeout */
    ngx_p3x_auth_task_t      *auth_task;

    /* TRANSACTION */
    ngx_p3x_msg_t            *msgs;
    ngx_uint_t                nmsgs;
    ngx_uint_t                index_total;    /* messages at login */
    ngx_uint_t                index_next;     /* first not yet asked for */
    off_t                     octets;

    ngx_uint_t                ndeleted;
    off_t                     deleted_octets;
    ngx_uint_t                last;
    ngx_p3x_marks_e           marks;
    ngx_p3x_msg_t            *pending_msg;    /* of a DELE on its way */

    ngx_uint_t                retrieved;
    off_t                     retrieved_octets;
    ngx_int_t                 expire;         /* the user's own retention,
                                                 NGX_CONF_UNSET: none */
    ngx_uint_t                nforced;        /* EXPIRE 0: retrieved, not
                                                 deleted, removed at QUIT */
    ngx_uint_t                removed;        /* by the commit, as Redis
                                                 counted */
    off_t                     removed_octets;
    ngx_uint_t                commands;
    const char               *end_reason;

    /* the multi-line reply being produced */
    ngx_p3x_stream_e          stream;
    ngx_uint_t                stream_next;    /* next message of a listing */
    ngx_p3x_msg_t            *body_msg;
    off_t                     body_offset;    /* octets fetched */
    off_t                     top_lines;      /* -1: the whole message */
    ngx_str_t                 body_rest;      /* fetched, not yet copied */
    u_char                   *body_spill;

    ngx_event_t               refresh;

    ngx_p3x_session_stats_t   stats;          /* metrics, session log */

    unsigned                  busy:1;         /* waiting for Redis/thread */
    unsigned                  fatal:1;        /* close at the next wake */
    unsigned                  expired:1;      /* login time is over */
    unsigned                  locked:1;
    unsigned                  locking:1;      /* LOCK sent, no reply yet */
    unsigned                  lock_lost:1;
    unsigned                  skipping:1;     /* discarding a long line */
    unsigned                  body_bol:1;     /* at a line start */
    unsigned                  body_cr:1;      /* the octet before was CR */
    unsigned                  body_in_header:1;
    unsigned                  body_blank:1;
    unsigned                  body_pending:1; /* a chunk is requested */
    unsigned                  body_bare_lf:1; /* logged once */
    unsigned                  quit:1;
    unsigned                  committed:1;    /* the commit's count came */
    unsigned                  user_ok:1;      /* USER given */
    unsigned                  user_known:1;
    unsigned                  login_failed:1; /* a store error at login */
    unsigned                  login_blocked:1;
    unsigned                  login_counted:1;  /* the address counted it */
    unsigned                  starttls:1;     /* STLS said, TLS next */
    unsigned                  conn_addr:1;    /* holds an address slot */
    unsigned                  conn_user:1;    /* holds a user slot */
    unsigned                  conn_addr_wait:1;  /* is taking one */
    unsigned                  conn_user_wait:1;
};


typedef void (*ngx_p3x_command_pt)(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);


extern ngx_module_t        ngx_mail_pop3_ext_module;
extern ngx_mail_protocol_t  ngx_p3x_lmtp_protocol;
extern ngx_p3x_script_t    ngx_p3x_scripts[];


/*
 * What completions call (see _session.c): the session's loop runs later,
 * from a posted event, with nothing of the session on the stack.
 */

static ngx_inline void
ngx_p3x_wake(ngx_p3x_ctx_t *ctx)
{
    if (!ctx->wake.posted && ctx->state != ngx_p3x_state_closing) {
        ngx_post_event(&ctx->wake, &ngx_posted_events);
    }
}


/*
 * A Redis request of a session: owned by it (cancelled when it goes),
 * on its connection (Redis runs its requests in order), to its handler.
 */

static ngx_inline void
ngx_p3x_call_init(ngx_p3x_ctx_t *ctx, ngx_p3x_rcall_t *call,
    ngx_int_t script, ngx_p3x_redis_handler_pt handler)
{
    ngx_memzero(call, sizeof(ngx_p3x_rcall_t));

    call->redis = ctx->conf->redis;
    call->owner = &ctx->requests;
    call->handler = handler;
    call->data = ctx;
    call->affinity = (uintptr_t) ctx;
    call->script = script;
}


/* _module.c */
ngx_int_t ngx_p3x_conf_add_cidr(ngx_conf_t *cf, ngx_array_t *a,
    ngx_str_t *text);
ngx_array_t *ngx_p3x_conf_loopback(ngx_conf_t *cf);

/* _session.c */
void ngx_p3x_init_session(ngx_mail_session_t *s, ngx_connection_t *c);
void ngx_p3x_init_protocol(ngx_event_t *rev);
void ngx_p3x_auth_state(ngx_event_t *rev);
ngx_int_t ngx_p3x_dummy_parse(ngx_mail_session_t *s);
void ngx_p3x_capa(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);

/* _login.c */
ngx_int_t ngx_p3x_login_init(ngx_p3x_ctx_t *ctx);
void ngx_p3x_user(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
void ngx_p3x_pass(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
void ngx_p3x_apop(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
void ngx_p3x_auth(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
void ngx_p3x_stls(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
void ngx_p3x_sasl_line(ngx_p3x_ctx_t *ctx, ngx_str_t *line);
ngx_uint_t ngx_p3x_login_methods(ngx_p3x_ctx_t *ctx);
void ngx_p3x_login_forget_password(ngx_p3x_ctx_t *ctx);
void ngx_p3x_login_expired(ngx_p3x_ctx_t *ctx);
void ngx_p3x_refresh_start(ngx_p3x_ctx_t *ctx);

/* _transaction.c */
void ngx_p3x_noop(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
void ngx_p3x_stat(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
void ngx_p3x_list(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
void ngx_p3x_uidl(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
void ngx_p3x_retr(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
void ngx_p3x_top(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
void ngx_p3x_dele(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
void ngx_p3x_rset(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
void ngx_p3x_last(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
void ngx_p3x_update(ngx_p3x_ctx_t *ctx);
ngx_int_t ngx_p3x_marks_read(ngx_p3x_ctx_t *ctx);
ngx_int_t ngx_p3x_stream(ngx_p3x_ctx_t *ctx);
void ngx_p3x_stream_end(ngx_p3x_ctx_t *ctx);

/* _ssl.c */
ngx_int_t ngx_p3x_ssl_on(ngx_p3x_ctx_t *ctx);
ngx_int_t ngx_p3x_ssl_secure(ngx_p3x_ctx_t *ctx);
ngx_int_t ngx_p3x_ssl_starttls(ngx_mail_session_t *s);
ngx_int_t ngx_p3x_ssl_starttls_only(ngx_mail_session_t *s);
void ngx_p3x_ssl_handshake(ngx_mail_session_t *s, ngx_buf_t *in,
    ngx_uint_t wipe, const char *command);
ngx_int_t ngx_p3x_ssl_identity(ngx_p3x_ctx_t *ctx, ngx_str_t *id);

/* _limit.c */
ngx_msec_t ngx_p3x_limit_delay(ngx_p3x_ctx_t *ctx, ngx_int_t failures);
ngx_int_t ngx_p3x_limit_attempt(ngx_p3x_ctx_t *ctx,
    ngx_p3x_redis_handler_pt handler);
void ngx_p3x_limit_refund(ngx_p3x_ctx_t *ctx, ngx_uint_t user);
ngx_int_t ngx_p3x_limit_conn(ngx_p3x_ctx_t *ctx, ngx_uint_t user,
    ngx_p3x_redis_handler_pt handler);
void ngx_p3x_limit_conn_renew(ngx_p3x_ctx_t *ctx);
void ngx_p3x_limit_conn_release(ngx_p3x_ctx_t *ctx, ngx_uint_t only_user);

/* _output.c */
ngx_int_t ngx_p3x_out_alloc(ngx_p3x_ctx_t *ctx, size_t size);
size_t ngx_p3x_out_chunk_room(ngx_p3x_ctx_t *ctx);
size_t ngx_p3x_out_body_size(ngx_p3x_ctx_t *ctx);
void ngx_p3x_out_free(ngx_p3x_ctx_t *ctx);
size_t ngx_p3x_out_room(ngx_p3x_ctx_t *ctx);
void ngx_p3x_out_str(ngx_p3x_ctx_t *ctx, u_char *data, size_t len);
size_t ngx_p3x_out_body(ngx_p3x_ctx_t *ctx, u_char *p, size_t len);
ngx_int_t ngx_p3x_out_flush(ngx_p3x_ctx_t *ctx);
void ngx_p3x_reply(ngx_p3x_ctx_t *ctx, const char *fmt, ...);
void ngx_p3x_error(ngx_p3x_ctx_t *ctx, const char *text);
ngx_int_t ngx_p3x_extra_args(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);

#define ngx_p3x_out_literal(ctx, s)                                           \
    ngx_p3x_out_str(ctx, (u_char *) s, sizeof(s) - 1)

/* _auth.c */
typedef void (*ngx_p3x_auth_handler_pt)(ngx_p3x_ctx_t *ctx, ngx_int_t ok);
ngx_int_t ngx_p3x_auth_verify(ngx_p3x_ctx_t *ctx, ngx_str_t *secret,
    ngx_p3x_auth_method_e method, ngx_str_t *response,
    ngx_str_t *challenge, ngx_p3x_auth_handler_pt handler);
void ngx_p3x_auth_cancel(ngx_p3x_ctx_t *ctx);
void ngx_p3x_auth_init_worker(ngx_cycle_t *cycle, ngx_uint_t max);

/* _redis.c */
ngx_int_t ngx_p3x_redis_init_worker(ngx_cycle_t *cycle, ngx_p3x_redis_t *r);
void ngx_p3x_redis_exit_worker(ngx_p3x_redis_t *r);
ngx_int_t ngx_p3x_redis_call(ngx_p3x_rcall_t *call, int argc,
    const char **argv, const size_t *argvlen);
ngx_int_t ngx_p3x_redis_eval(ngx_p3x_rcall_t *call, ngx_uint_t nkeys,
    const char **keys, const size_t *keyslen, ngx_uint_t nargs,
    const char **args, const size_t *argslen);
void ngx_p3x_redis_cancel(ngx_queue_t *owner, ngx_uint_t tag);

/* _script.c */
ngx_int_t ngx_p3x_scripts_init(void);

/* _retention.c */
ngx_int_t ngx_p3x_retention_parse(u_char *p, size_t len);
void ngx_p3x_retention_user(ngx_p3x_ctx_t *ctx, redisReply *el);
void ngx_p3x_retention_capa(ngx_p3x_ctx_t *ctx);
ngx_uint_t ngx_p3x_retention_forced(ngx_p3x_ctx_t *ctx);
const char *ngx_p3x_retention_delayed(ngx_p3x_ctx_t *ctx, redisReply *reply);

/* _store.c */
ngx_int_t ngx_p3x_store_lock(ngx_p3x_ctx_t *ctx,
    ngx_p3x_redis_handler_pt handler);
ngx_int_t ngx_p3x_store_refresh(ngx_p3x_ctx_t *ctx,
    ngx_p3x_redis_handler_pt handler);
ngx_int_t ngx_p3x_store_mark(ngx_p3x_ctx_t *ctx, ngx_p3x_msg_t *msg,
    ngx_p3x_redis_handler_pt handler);
ngx_int_t ngx_p3x_store_marks(ngx_p3x_ctx_t *ctx,
    ngx_p3x_redis_handler_pt handler);
ngx_int_t ngx_p3x_store_marks_apply(ngx_p3x_ctx_t *ctx, redisReply *reply);
ngx_int_t ngx_p3x_store_commit(ngx_p3x_ctx_t *ctx,
    ngx_p3x_redis_handler_pt handler);
void ngx_p3x_store_release(ngx_p3x_ctx_t *ctx);
ngx_int_t ngx_p3x_store_authinfo(ngx_p3x_ctx_t *ctx,
    ngx_p3x_redis_handler_pt handler);
ngx_int_t ngx_p3x_store_fetch(ngx_p3x_ctx_t *ctx, ngx_p3x_msg_t *msg,
    off_t offset, size_t len, ngx_p3x_redis_handler_pt handler);
ngx_int_t ngx_p3x_store_index_begin(ngx_p3x_ctx_t *ctx, redisReply *reply);
ngx_int_t ngx_p3x_store_index_fetch(ngx_p3x_ctx_t *ctx,
    ngx_p3x_redis_handler_pt handler);
ngx_int_t ngx_p3x_store_index_add(ngx_p3x_ctx_t *ctx, redisReply *reply);
ngx_int_t ngx_p3x_store_error(redisReply *reply, const char *code);


#endif /* _NGX_MAIL_POP3_EXT_MODULE_H_INCLUDED_ */
