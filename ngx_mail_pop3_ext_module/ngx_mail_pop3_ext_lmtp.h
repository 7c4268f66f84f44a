
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * LMTP (RFC 2033): the module's second mail protocol, "pop3_ext_lmtp",
 * which delivers into the mailboxes the POP3 side serves.  Its files:
 *
 *   _lmtp_module.c  the protocol and its directives
 *   _lmtp.c         a session: events, the command loop, the commands,
 *                   the per-recipient replies, closing
 *   _lmtp_data.c    the message: DATA and BDAT decoding into chunks,
 *                   staged in Redis as they come (STAGE), then stored
 *                   per mailbox (STORE); recipient look-ups
 *   _lmtp_parse.c   command lines, paths, parameters (pure)
 *
 * It uses the Redis client of the POP3 side (a session's requests are
 * owned by it and cancelled when it closes) and follows the completion
 * discipline of _session.c: a completion records its result, lowers
 * ctx->pending and posts ctx->wake; only the session's loop acts on it.
 */


#ifndef _NGX_MAIL_POP3_EXT_LMTP_H_INCLUDED_
#define _NGX_MAIL_POP3_EXT_LMTP_H_INCLUDED_


#include "ngx_mail_pop3_ext_module.h"

#include <openssl/evp.h>


/* a command line, CRLF included: RFC 5321's 512 and room for parameters */
#define NGX_P3X_LMTP_LINE_MAX       2048

/* the input buffer: command lines, and the message as it arrives */
#define NGX_P3X_LMTP_IN_SIZE        32768

/*
 * Replies: a line is at most NGX_P3X_LMTP_REPLY_MAX octets, CRLF
 * included (RFC 5321, 4.5.3.1.5); a command runs only with room for two
 */
#define NGX_P3X_LMTP_OUT_SIZE       8192
#define NGX_P3X_LMTP_REPLY_MAX      512

/*
 * The message goes to Redis in chunks, one STAGE per chunk and mailbox.
 * The chunk is NGX_P3X_LMTP_CHUNKS_TOTAL / (2 x mailboxes), between
 * CHUNK_MIN and CHUNK_MAX, and as many chunks are on their way as fit
 * in CHUNKS_TOTAL, at least 2 per mailbox (one sent while the next is
 * read): a session's requests hold about 512 KB whatever the message,
 * 1.6 MB with 100 mailboxes of the smallest chunk.
 */
#define NGX_P3X_LMTP_CHUNK_MAX      65536
#define NGX_P3X_LMTP_CHUNK_MIN      8192
#define NGX_P3X_LMTP_CHUNKS_TOTAL   (512 * 1024)
#define NGX_P3X_LMTP_INFLIGHT       2

/* a UID taken (EXISTS): another one, a few times */
#define NGX_P3X_LMTP_STORE_TRIES    3

#define NGX_P3X_LMTP_PARSE_INVALID  1

#define NGX_P3X_LMTP_RCPT_LOCAL     0
#define NGX_P3X_LMTP_RCPT_ADDRESS   1


typedef struct ngx_p3x_lmtp_ctx_s  ngx_p3x_lmtp_ctx_t;


typedef struct {
    ngx_array_t              *allow;          /* ngx_cidr_t; NULL: all */
    off_t                     max_size;
    ngx_uint_t                max_recipients;
    ngx_uint_t                recipient;      /* NGX_P3X_LMTP_RCPT_* */
    off_t                     quota_octets;
    ngx_uint_t                quota_messages;
    ngx_flag_t                quota_tempfail;
} ngx_p3x_lmtp_srv_conf_t;


typedef enum {
    ngx_p3x_lmtp_cmd_unknown = 0,
    ngx_p3x_lmtp_cmd_lhlo,
    ngx_p3x_lmtp_cmd_mail,
    ngx_p3x_lmtp_cmd_rcpt,
    ngx_p3x_lmtp_cmd_data,
    ngx_p3x_lmtp_cmd_bdat,
    ngx_p3x_lmtp_cmd_rset,
    ngx_p3x_lmtp_cmd_noop,
    ngx_p3x_lmtp_cmd_quit,
    ngx_p3x_lmtp_cmd_vrfy,
    ngx_p3x_lmtp_cmd_expn,
    ngx_p3x_lmtp_cmd_helo,
    ngx_p3x_lmtp_cmd_help,
    ngx_p3x_lmtp_cmd_starttls
} ngx_p3x_lmtp_cmd_e;


typedef struct {
    ngx_p3x_lmtp_cmd_e        command;
    ngx_str_t                 line;           /* without the line end */
    ngx_str_t                 name;
    ngx_str_t                 arg;            /* after the first space */
} ngx_p3x_lmtp_cmd_t;


typedef enum {
    ngx_p3x_lmtp_state_init = 0,    /* before LHLO */
    ngx_p3x_lmtp_state_ready,       /* no transaction */
    ngx_p3x_lmtp_state_mail,        /* MAIL accepted: RCPT, DATA, BDAT */
    ngx_p3x_lmtp_state_data,        /* the DATA stream */
    ngx_p3x_lmtp_state_bdat,        /* a BDAT chunk */
    ngx_p3x_lmtp_state_closing
} ngx_p3x_lmtp_state_e;


/* what the session waits for before it goes on */
typedef enum {
    ngx_p3x_lmtp_wait_none = 0,
    ngx_p3x_lmtp_wait_lookup,       /* a recipient's look-up */
    ngx_p3x_lmtp_wait_window,       /* room for the next chunk */
    ngx_p3x_lmtp_wait_delivery      /* the last chunks and the STOREs */
} ngx_p3x_lmtp_wait_e;


typedef enum {
    ngx_p3x_lmtp_mb_staging = 0,
    ngx_p3x_lmtp_mb_storing,
    ngx_p3x_lmtp_mb_stored,
    ngx_p3x_lmtp_mb_failed
} ngx_p3x_lmtp_mb_e;


/* one mailbox of the transaction: its copy of the message */
typedef struct {
    ngx_p3x_lmtp_ctx_t       *ctx;
    ngx_str_t                 name;
    ngx_str_t                 stage;          /* its staging key */
    ngx_uint_t                inflight;       /* STAGEs on their way */
    ngx_uint_t                tries;          /* STOREs sent */
    ngx_p3x_lmtp_mb_e         status;
    const char               *code;           /* of a failure: "451 4.3.0" */
    const char               *text;
    u_char                    uid[P3X_UID_MAX];
    size_t                    uid_len;
    unsigned                  dup:1;          /* its delivery id was known */
    unsigned                  staged:1;       /* a STAGE was sent */
} ngx_p3x_lmtp_mbox_t;


/* an accepted recipient, in RCPT order; several may share a mailbox */
typedef struct {
    ngx_str_t                 addr;
    ngx_uint_t                mbox;
} ngx_p3x_lmtp_rcpt_t;


/* the RCPT being looked up */
typedef struct {
    ngx_str_t                 addr;
    ngx_str_t                 user;
    ngx_str_t                 mailbox;
    ngx_str_t                 meta_of;        /* whose meta was read */
    int64_t                   messages;       /* -1: usage not kept */
    int64_t                   octets;
    int64_t                   quota_messages; /* -1: the default */
    int64_t                   quota_octets;
    unsigned                  exists:1;
    unsigned                  failed:1;       /* Redis did not answer */
    unsigned                  meta:1;         /* meta_of's usage is read */
    unsigned                  bad_mailbox:1;
} ngx_p3x_lmtp_lookup_t;


struct ngx_p3x_lmtp_ctx_s {
    ngx_mail_session_t       *session;
    ngx_connection_t         *connection;
    ngx_p3x_lmtp_srv_conf_t  *conf;
    ngx_p3x_redis_t          *redis;

    ngx_p3x_lmtp_state_e      state;
    ngx_p3x_lmtp_wait_e       wait;

    ngx_queue_t               requests;       /* this session's, to Redis */
    ngx_event_t               wake;           /* completions post it */
    ngx_uint_t                pending;        /* requests it waits for */

    ngx_buf_t                 in;             /* no memory while idle */
    ngx_buf_t                 out;

    /* the transaction: its memory goes with RSET or its end */
    ngx_pool_t               *pool;
    ngx_str_t                 from;
    off_t                     declared;       /* SIZE= */
    ngx_array_t               rcpts;          /* ngx_p3x_lmtp_rcpt_t */
    ngx_array_t               mboxes;         /* ngx_p3x_lmtp_mbox_t */
    ngx_p3x_lmtp_lookup_t     lookup;

    /*
     * The look-up's address, user name and mailbox name, here and not in
     * the transaction's pool: refused recipients cost no memory.
     */
    u_char                    lookup_buf[NGX_P3X_LMTP_LINE_MAX
                                         + 2 * P3X_NAME_MAX];
    u_char                    token[P3X_TOKEN_LEN];

    /* the message */
    u_char                   *chunk;
    size_t                    chunk_size;
    size_t                    chunk_len;
    ngx_uint_t                window;         /* chunks per mailbox out */
    off_t                     staged;         /* octets given to STAGEs */
    off_t                     body_len;       /* octets decoded */
    off_t                     header_len;     /* the Return-Path line */
    off_t                     bdat_left;      /* of the BDAT chunk */
    off_t                     bdat_size;
    ngx_uint_t                dstate;         /* the decoder's state */
    EVP_MD_CTX               *sha;
    u_char                    dlv[P3X_DLV_ID_LEN];
    const char               *body_code;      /* the message refused */
    const char               *body_text;
    ngx_uint_t                reply_next;     /* per-recipient replies */

    unsigned                  lhlo:1;
    unsigned                  quit:1;
    unsigned                  fatal:1;
    unsigned                  starttls:1;     /* STARTTLS said, TLS next */
    unsigned                  refused:1;      /* not an allowed network */
    unsigned                  skipping:1;     /* a long line's rest */
    unsigned                  bdat_last:1;
    unsigned                  bdat_discard:1; /* a chunk read and dropped */
    unsigned                  bdat_used:1;    /* BDAT, not DATA */
    unsigned                  replying:1;     /* per-recipient replies */
    unsigned                  digested:1;
};


extern ngx_module_t  ngx_mail_pop3_ext_lmtp_module;


static ngx_inline void
ngx_p3x_lmtp_wake(ngx_p3x_lmtp_ctx_t *ctx)
{
    if (!ctx->wake.posted && ctx->state != ngx_p3x_lmtp_state_closing) {
        ngx_post_event(&ctx->wake, &ngx_posted_events);
    }
}


/* _lmtp.c */
void ngx_p3x_lmtp_init_session(ngx_mail_session_t *s, ngx_connection_t *c);
void ngx_p3x_lmtp_init_protocol(ngx_event_t *rev);
void ngx_p3x_lmtp_auth_state(ngx_event_t *rev);
ngx_int_t ngx_p3x_lmtp_dummy_parse(ngx_mail_session_t *s);
void ngx_p3x_lmtp_reply(ngx_p3x_lmtp_ctx_t *ctx, const char *fmt, ...);
void ngx_p3x_lmtp_error(ngx_p3x_lmtp_ctx_t *ctx, const char *fmt, ...);

/* _lmtp_data.c */
ngx_int_t ngx_p3x_lmtp_lookup(ngx_p3x_lmtp_ctx_t *ctx);
void ngx_p3x_lmtp_lookup_done(ngx_p3x_lmtp_ctx_t *ctx);
ngx_int_t ngx_p3x_lmtp_body_start(ngx_p3x_lmtp_ctx_t *ctx);
ngx_int_t ngx_p3x_lmtp_body_read(ngx_p3x_lmtp_ctx_t *ctx);
ngx_int_t ngx_p3x_lmtp_body_window(ngx_p3x_lmtp_ctx_t *ctx);
ngx_int_t ngx_p3x_lmtp_deliver(ngx_p3x_lmtp_ctx_t *ctx);
ngx_int_t ngx_p3x_lmtp_replies(ngx_p3x_lmtp_ctx_t *ctx);
void ngx_p3x_lmtp_discard(ngx_p3x_lmtp_ctx_t *ctx);

/* _lmtp_parse.c */
ngx_int_t ngx_p3x_lmtp_parse_command(u_char *p, u_char *last,
    ngx_p3x_lmtp_cmd_t *cmd, u_char **next);
ngx_int_t ngx_p3x_lmtp_parse_path(ngx_str_t *arg, const char *prefix,
    ngx_str_t *path, ngx_str_t *params);
ngx_int_t ngx_p3x_lmtp_next_param(ngx_str_t *params, ngx_str_t *key,
    ngx_str_t *value);
ngx_int_t ngx_p3x_lmtp_parse_size(u_char *p, size_t len, off_t *size);
ngx_int_t ngx_p3x_lmtp_parse_bdat(ngx_str_t *arg, off_t *size,
    ngx_uint_t *last_chunk);
ngx_int_t ngx_p3x_lmtp_user_name(ngx_str_t *path, ngx_uint_t local_part,
    u_char *buf, ngx_str_t *name);


#endif /* _NGX_MAIL_POP3_EXT_LMTP_H_INCLUDED_ */
