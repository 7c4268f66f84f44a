
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * The POP3 session: AUTHORIZATION, TRANSACTION and UPDATE (RFC 1939).
 *
 * One loop, ngx_p3x_resume(), drives a session: it continues a multi-line
 * reply, executes buffered commands in order (pipelining), flushes the
 * replies, and reads more.  A command that needs Redis or the thread pool
 * sets ctx->busy and returns; its completion clears it and calls the loop
 * again.  Nothing in the loop blocks.
 */


#include "ngx_mail_pop3_ext_module.h"


#define NGX_P3X_REPLY_ROOM  1024


typedef void (*ngx_p3x_command_pt)(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);


static void ngx_p3x_read_handler(ngx_event_t *rev);
static ngx_int_t ngx_p3x_read(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_in_free(ngx_p3x_ctx_t *ctx);
static ngx_int_t ngx_p3x_next_command(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_dispatch(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
static ngx_int_t ngx_p3x_extra_args(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
static ngx_int_t ngx_p3x_stream(ngx_p3x_ctx_t *ctx);
static ngx_p3x_msg_t *ngx_p3x_message(ngx_p3x_ctx_t *ctx,
    ngx_p3x_cmd_t *cmd, ngx_uint_t nargs);
static void ngx_p3x_cleanup(void *data);
static void ngx_p3x_log_end(ngx_p3x_ctx_t *ctx);

static void ngx_p3x_refresh_handler(ngx_event_t *ev);
static void ngx_p3x_refreshed(void *data, redisReply *reply);
static void ngx_p3x_quit(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
static void ngx_p3x_committed(void *data, redisReply *reply);
static void ngx_p3x_commit_failed(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_noop(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
static void ngx_p3x_utf8(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
static void ngx_p3x_stat(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
static void ngx_p3x_list(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
static void ngx_p3x_uidl(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
static void ngx_p3x_retr(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
static void ngx_p3x_top(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
static void ngx_p3x_body_start(ngx_p3x_ctx_t *ctx, ngx_p3x_msg_t *msg,
    off_t lines);
static ngx_int_t ngx_p3x_body_next(ngx_p3x_ctx_t *ctx);
static ngx_int_t ngx_p3x_body_fetch(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_body_chunk(void *data, redisReply *reply);
static void ngx_p3x_dele(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
static void ngx_p3x_dele_marked(void *data, redisReply *reply);
static void ngx_p3x_rset(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
static void ngx_p3x_rset_cleared(void *data, redisReply *reply);
static void ngx_p3x_last(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
static ngx_int_t ngx_p3x_lock_lost(ngx_p3x_ctx_t *ctx, redisReply *reply);


static ngx_p3x_command_pt  ngx_p3x_auth_commands[] = {
    NULL,                           /* unknown */
    ngx_p3x_user,
    ngx_p3x_pass,
    ngx_p3x_apop,
    ngx_p3x_auth,
    ngx_p3x_stls,
    ngx_p3x_capa,
    ngx_p3x_quit,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    ngx_p3x_utf8
};


static ngx_p3x_command_pt  ngx_p3x_trans_commands[] = {
    NULL,                           /* unknown */
    NULL, NULL, NULL, NULL, NULL,   /* USER PASS APOP AUTH STLS */
    ngx_p3x_capa,
    ngx_p3x_quit,
    ngx_p3x_noop,
    ngx_p3x_stat,
    ngx_p3x_list,
    ngx_p3x_retr,
    ngx_p3x_dele,
    ngx_p3x_rset,
    ngx_p3x_top,
    ngx_p3x_uidl,
    ngx_p3x_last,
    NULL                            /* UTF8 */
};


void
ngx_p3x_init_session(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_p3x_ctx_t                 *ctx;
    ngx_pool_cleanup_t            *cln;
    ngx_mail_pop3_ext_srv_conf_t  *conf;

    conf = ngx_mail_get_module_srv_conf(s, ngx_mail_pop3_ext_module);

    ctx = ngx_pcalloc(c->pool, sizeof(ngx_p3x_ctx_t));
    if (ctx == NULL) {
        ngx_mail_close_connection(c);
        return;
    }

    ngx_mail_set_ctx(s, ctx, ngx_mail_pop3_ext_module);

    ctx->session = s;
    ctx->connection = c;
    ctx->conf = conf;

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        ngx_mail_close_connection(c);
        return;
    }

    cln->handler = ngx_p3x_cleanup;
    cln->data = ctx;

    ctx->refresh.handler = ngx_p3x_refresh_handler;
    ctx->refresh.data = ctx;
    ctx->refresh.log = c->log;
    ctx->refresh.cancelable = 1;

    ctx->user.data = ngx_pnalloc(c->pool, P3X_NAME_MAX);
    ctx->in = &ctx->in_buf;

    if (ctx->user.data == NULL
        || ngx_p3x_out_alloc(ctx, NGX_P3X_OUT_SMALL) != NGX_OK)
    {
        ngx_mail_close_connection(c);
        return;
    }

    /* replies are whole lines already: Nagle would only delay them */
    if (ngx_tcp_nodelay(c) != NGX_OK) {
        ngx_mail_close_connection(c);
        return;
    }

    c->log->action = "in auth state";

    /* the greeting, at once or after the address's connection slot */
    if (ngx_p3x_login_init(ctx) != NGX_OK) {
        ngx_mail_close_connection(c);
        return;
    }

    ngx_p3x_init_protocol(c->read);
}


/*
 * Also the entry point after a STLS handshake: what the client sent in
 * plaintext before it is dropped, and the session starts over.
 */

void
ngx_p3x_init_protocol(ngx_event_t *rev)
{
    ngx_connection_t    *c;
    ngx_mail_session_t  *s;
    ngx_p3x_ctx_t       *ctx;

    c = rev->data;
    s = c->data;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_pop3_ext_module);

    ctx->state = ngx_p3x_state_auth;
    ctx->user_ok = 0;
    ctx->skipping = 0;
    ctx->sasl = ngx_p3x_sasl_wait_none;
    ctx->in->pos = ctx->in->start;
    ctx->in->last = ctx->in->start;

    c->read->handler = ngx_p3x_read_handler;
    c->write->handler = ngx_p3x_write_handler;

    ngx_p3x_resume(ctx);
}


/* the core's own command parsing is never used by this protocol */

ngx_int_t
ngx_p3x_dummy_parse(ngx_mail_session_t *s)
{
    return NGX_MAIL_PARSE_INVALID_COMMAND;
}


void
ngx_p3x_auth_state(ngx_event_t *rev)
{
    ngx_p3x_read_handler(rev);
}


static void
ngx_p3x_read_handler(ngx_event_t *rev)
{
    ngx_p3x_ctx_t  *ctx;

    ctx = ngx_p3x_event_ctx(rev);

    if (ctx) {
        ngx_p3x_resume(ctx);
    }
}


/*
 * The session of a client event, or NULL when the event was a timeout
 * and the session is closed (RFC 1939: an autologout does not enter the
 * UPDATE state).
 */

ngx_p3x_ctx_t *
ngx_p3x_event_ctx(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_mail_session_t  *s;
    ngx_p3x_ctx_t       *ctx;

    c = ev->data;
    s = c->data;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_pop3_ext_module);

    if (ev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "client timed out");
        c->timedout = 1;
        ngx_p3x_close(ctx);
        return NULL;
    }

    return ctx;
}


void
ngx_p3x_resume(ngx_p3x_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_msec_t                 timeout;
    ngx_connection_t          *c;
    ngx_mail_core_srv_conf_t  *cscf;

    c = ctx->connection;

    for ( ;; ) {

        if (ctx->busy) {
            return;
        }

        if (ngx_p3x_out_alloc(ctx, NGX_P3X_OUT_SMALL) != NGX_OK) {
            ngx_p3x_close(ctx);
            return;
        }

        if (ctx->stream != ngx_p3x_stream_none) {
            rc = ngx_p3x_stream(ctx);

            if (rc == NGX_ERROR) {
                ngx_p3x_close(ctx);
                return;
            }

            if (rc == NGX_AGAIN) {
                if (ctx->busy) {
                    return;
                }

                goto flush;
            }
        }

        if (ctx->quit) {
            rc = ngx_p3x_out_flush(ctx);

            if (rc != NGX_AGAIN) {
                ngx_p3x_close(ctx);
            }

            return;
        }

        if (ngx_p3x_out_room(ctx) < NGX_P3X_REPLY_ROOM) {
            goto flush;
        }

        if (ctx->starttls) {
            rc = ngx_p3x_out_flush(ctx);

            if (rc == NGX_ERROR) {
                ngx_p3x_close(ctx);

            } else if (rc == NGX_OK) {
                ngx_p3x_ssl_start(ctx);
            }

            return;
        }

        rc = ngx_p3x_next_command(ctx);

        if (rc == NGX_OK) {
            continue;
        }

        if (rc == NGX_ERROR) {
            ngx_p3x_close(ctx);
            return;
        }

        /* no whole command is buffered: send the replies, then read */

        rc = ngx_p3x_out_flush(ctx);

        if (rc == NGX_ERROR) {
            ngx_p3x_close(ctx);
            return;
        }

        if (rc == NGX_AGAIN) {
            return;
        }

        ngx_p3x_out_free(ctx);

        rc = ngx_p3x_read(ctx);

        if (rc == NGX_OK) {
            continue;
        }

        if (rc == NGX_ERROR) {
            ngx_p3x_close(ctx);
            return;
        }

        /* NGX_AGAIN: idle until the client speaks, with no buffers */

        ngx_p3x_in_free(ctx);

        if (ctx->state == ngx_p3x_state_trans) {
            timeout = ctx->conf->idle_timeout;

        } else {
            cscf = ngx_mail_get_module_srv_conf(ctx->session,
                                                ngx_mail_core_module);
            timeout = cscf->timeout;
        }

        ngx_add_timer(c->read, timeout);

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_p3x_close(ctx);
        }

        return;

    flush:

        rc = ngx_p3x_out_flush(ctx);

        if (rc == NGX_ERROR) {
            ngx_p3x_close(ctx);
            return;
        }

        if (rc == NGX_AGAIN) {
            return;
        }
    }
}


static ngx_int_t
ngx_p3x_read(ngx_p3x_ctx_t *ctx)
{
    size_t             size;
    ssize_t            n;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = ctx->connection;
    b = ctx->in;

    if (b->start == NULL) {
        size = ngx_max(ctx->conf->line_max, ctx->conf->sasl_line_max);

        b->start = ngx_alloc(size, c->log);
        if (b->start == NULL) {
            return NGX_ERROR;
        }

        b->end = b->start + size;
        b->pos = b->start;
        b->last = b->start;
    }

    if (b->pos == b->last) {
        b->pos = b->start;
        b->last = b->start;
    }

    if (b->last == b->end) {
        return NGX_AGAIN;
    }

    n = c->recv(c, b->last, b->end - b->last);

    if (n == NGX_AGAIN) {
        return NGX_AGAIN;
    }

    if (n == NGX_ERROR || n == 0) {
        return NGX_ERROR;
    }

    b->last += n;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    return NGX_OK;
}


static void
ngx_p3x_in_free(ngx_p3x_ctx_t *ctx)
{
    ngx_buf_t  *b;

    b = ctx->in;

    if (b->start && b->pos == b->last && !ctx->skipping) {
        /* what was read into it may have been a password */
        ngx_explicit_memzero(b->start, b->end - b->start);
        ngx_free(b->start);
        ngx_memzero(b, sizeof(ngx_buf_t));
    }
}


/*
 * Executes one buffered command.  NGX_AGAIN: no whole line is buffered;
 * NGX_OK: a command ran (it may have made the session busy).
 */

static ngx_int_t
ngx_p3x_next_command(ngx_p3x_ctx_t *ctx)
{
    u_char         *lf, *next;
    ngx_int_t       rc;
    ngx_str_t       line;
    ngx_buf_t      *b;
    ngx_p3x_cmd_t   cmd;

    b = ctx->in;

    if (ctx->skipping) {
        lf = ngx_strlchr(b->pos, b->last, LF);

        if (lf == NULL) {
            b->pos = b->last;
            return NGX_AGAIN;
        }

        b->pos = lf + 1;
        ctx->skipping = 0;
    }

    if (b->pos == b->last) {
        return NGX_AGAIN;
    }

    rc = ngx_p3x_parse_command(b->pos, b->last, &cmd, &next);

    if (rc == NGX_AGAIN) {

        if (b->last < b->end) {
            return NGX_AGAIN;
        }

        if (b->pos > b->start) {
            b->last = ngx_movemem(b->start, b->pos, b->last - b->pos);
            b->pos = b->start;
            return NGX_AGAIN;
        }

        /* a full buffer and no line end: drop the rest of the line */

        ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                      "client sent too long command");

        b->pos = b->start;
        b->last = b->start;
        ctx->skipping = 1;

        if (ctx->sasl != ngx_p3x_sasl_wait_none) {
            /* the exchange ends: the next line is a command again */
            ctx->sasl = ngx_p3x_sasl_wait_none;
            ngx_p3x_error(ctx, "-ERR [AUTH] SASL response too long");
            return NGX_OK;
        }

        ngx_p3x_error(ctx, "-ERR line too long");
        return NGX_OK;
    }

    b->pos = next;

    ctx->commands++;

    if (ctx->sasl != ngx_p3x_sasl_wait_none) {
        line.data = cmd.name.data;
        line.len = next - line.data;

        while (line.len && (line.data[line.len - 1] == LF
                            || line.data[line.len - 1] == CR))
        {
            line.len--;
        }

        ngx_p3x_sasl_line(ctx, &line);
        return NGX_OK;
    }

    if ((size_t) (next - cmd.name.data) > ctx->conf->line_max) {
        ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                      "client sent too long command");
        ngx_p3x_error(ctx, "-ERR line too long");
        return NGX_OK;
    }

    if (ctx->conf->max_commands && ctx->commands > ctx->conf->max_commands) {
        ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                      "client sent too many commands");
        ngx_p3x_out_literal(ctx, "-ERR [SYS/PERM] too many commands" CRLF);
        ctx->quit = 1;
        return NGX_OK;
    }

    switch (rc) {

    case NGX_OK:
        ngx_p3x_dispatch(ctx, &cmd);
        break;

    case NGX_P3X_PARSE_TOO_MANY:
        ngx_p3x_error(ctx, "-ERR too many arguments");
        break;

    case NGX_P3X_PARSE_EMPTY:
        ngx_p3x_error(ctx, "-ERR empty command");
        break;

    default: /* NGX_P3X_PARSE_INVALID */
        ngx_p3x_error(ctx, "-ERR invalid octets in command");
    }

    return NGX_OK;
}


static void
ngx_p3x_dispatch(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    ngx_p3x_command_pt  handler;

    if (ctx->state == ngx_p3x_state_trans && ctx->lock_lost) {
        ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                      "pop3_ext: the lock of maildrop \"%V\" was lost",
                      &ctx->mailbox);
        ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] maildrop lock lost" CRLF);
        ctx->quit = 1;
        return;
    }

    if (cmd->command == ngx_p3x_cmd_unknown) {
        ngx_p3x_error(ctx, "-ERR unknown command");
        return;
    }

    switch (ctx->state) {

    case ngx_p3x_state_auth:
        handler = ngx_p3x_auth_commands[cmd->command];
        break;

    case ngx_p3x_state_trans:
        handler = ngx_p3x_trans_commands[cmd->command];
        break;

    default:
        return;
    }

    if (handler == NULL) {
        ngx_p3x_error(ctx, "-ERR command not valid in this state");
        return;
    }

    handler(ctx, cmd);
}


/* a client error; nginx's max_errors ends a session that keeps erring */

void
ngx_p3x_error(ngx_p3x_ctx_t *ctx, const char *text)
{
    ngx_mail_core_srv_conf_t  *cscf;

    ngx_p3x_reply(ctx, "%s", text);

    cscf = ngx_mail_get_module_srv_conf(ctx->session, ngx_mail_core_module);

    if (++ctx->session->errors >= cscf->max_errors) {
        ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                      "client sent too many invalid commands");
        ctx->quit = 1;
    }
}


/* one reply line; the room for it is checked before each command */

/* for commands that take no argument: true after the error reply */

static ngx_int_t
ngx_p3x_extra_args(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    u_char  text[64];

    if (cmd->nargs == 0) {
        return 0;
    }

    *ngx_snprintf(text, sizeof(text) - 1, "-ERR %V takes no arguments",
                  &cmd->name) = '\0';

    ngx_p3x_error(ctx, (const char *) text);

    return 1;
}


void
ngx_p3x_reply(ngx_p3x_ctx_t *ctx, const char *fmt, ...)
{
    u_char   *p, *end;
    va_list   args;

    p = ctx->out->last;
    end = p + ngx_min(ngx_p3x_out_room(ctx), NGX_P3X_REPLY_ROOM) - 2;

    va_start(args, fmt);
    p = ngx_vslprintf(p, end, fmt, args);
    va_end(args);

    *p++ = CR;
    *p++ = LF;

    ctx->out->last = p;
}


void
ngx_p3x_close(ngx_p3x_ctx_t *ctx)
{
    ngx_connection_t  *c;

    c = ctx->connection;

    if (ctx->state == ngx_p3x_state_trans
        || ctx->state == ngx_p3x_state_update)
    {
        ngx_p3x_log_end(ctx);
    }

    ctx->state = ngx_p3x_state_closing;

    /*
     * Now, not at the pool's end: a TLS shutdown may keep the pool alive
     * a while, and no Redis reply, hash result or timer may reach the
     * session meanwhile.  The pool cleanup runs it again, harmlessly.
     */

    ngx_p3x_cleanup(ctx);

    ngx_mail_close_connection(c);
}


/* gives back all a session holds; runs twice at most, the second idle */

static void
ngx_p3x_cleanup(void *data)
{
    ngx_p3x_ctx_t  *ctx = data;

    if (ctx->refresh.timer_set) {
        ngx_del_timer(&ctx->refresh);
    }

    if (ctx->ev_delay.timer_set) {
        ngx_del_timer(&ctx->ev_delay);
    }

    ngx_p3x_auth_cancel(ctx);
    ngx_p3x_redis_cancel(ctx->conf->redis, ctx);

    if (ctx->locked || ctx->locking) {
        ctx->locked = 0;
        ctx->locking = 0;
        ngx_p3x_store_release(ctx);
    }

    ngx_p3x_limit_conn_release(ctx, 0);

    ngx_p3x_login_forget_password(ctx);

    if (ctx->out) {
        ngx_free(ctx->out->start);
        ctx->out = NULL;
    }

    if (ctx->in->start) {
        ngx_explicit_memzero(ctx->in->start, ctx->in->end - ctx->in->start);
        ngx_free(ctx->in->start);
        ngx_memzero(ctx->in, sizeof(ngx_buf_t));
    }
}


static void
ngx_p3x_log_end(ngx_p3x_ctx_t *ctx)
{
    ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                  "pop3_ext: session end, user=\"%V\" mailbox=\"%V\" "
                  "retr=%ui/%O dele=%ui/%O left=%ui%s",
                  &ctx->user, &ctx->mailbox,
                  ctx->retrieved, ctx->retrieved_octets,
                  ctx->state == ngx_p3x_state_update ? ctx->ndeleted : 0,
                  ctx->state == ngx_p3x_state_update
                  ? ctx->deleted_octets : 0,
                  ctx->nmsgs - (ctx->state == ngx_p3x_state_update
                                ? ctx->ndeleted : 0),
                  ctx->state == ngx_p3x_state_update ? "" : " (no QUIT)");
}


/*
 * The lock and the connection slots live while the session does: they
 * are renewed every lock_ttl / 3.
 */

void
ngx_p3x_refresh_start(ngx_p3x_ctx_t *ctx)
{
    if (!ctx->refresh.timer_set) {
        ngx_add_timer(&ctx->refresh, ctx->conf->lock_ttl / 3);
    }
}


static void
ngx_p3x_refresh_handler(ngx_event_t *ev)
{
    ngx_p3x_ctx_t  *ctx = ev->data;

    if (ctx->locked && !ctx->lock_lost) {
        (void) ngx_p3x_store_refresh(ctx, ngx_p3x_refreshed);
    }

    ngx_p3x_limit_conn_renew(ctx);

    if (ctx->locked || ctx->conn_addr || ctx->conn_user) {
        ngx_add_timer(&ctx->refresh, ctx->conf->lock_ttl / 3);
    }
}


static void
ngx_p3x_refreshed(void *data, redisReply *reply)
{
    ngx_p3x_ctx_t *ctx = data;

    (void) ngx_p3x_lock_lost(ctx, reply);
}


static ngx_int_t
ngx_p3x_lock_lost(ngx_p3x_ctx_t *ctx, redisReply *reply)
{
    if (reply && reply->type == REDIS_REPLY_ERROR
        && reply->len >= 8 && ngx_strncmp(reply->str, "LOCKLOST", 8) == 0)
    {
        ctx->lock_lost = 1;
        return 1;
    }

    return 0;
}


/* RFC 2449: what is offered depends on the state and the channel */

void
ngx_p3x_capa(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    ngx_uint_t  methods;

    ngx_p3x_out_literal(ctx, "+OK capability list follows" CRLF
                             "TOP" CRLF
                             "UIDL" CRLF
                             "PIPELINING" CRLF
                             "RESP-CODES" CRLF
                             "AUTH-RESP-CODE" CRLF
                             "EXPIRE NEVER" CRLF);

    if (ctx->state == ngx_p3x_state_auth) {
        methods = ngx_p3x_login_methods(ctx);

        if (methods & NGX_P3X_AUTH_USER) {
            ngx_p3x_out_literal(ctx, "USER" CRLF);
        }

        if (methods & (NGX_P3X_AUTH_PLAIN|NGX_P3X_AUTH_LOGIN
                       |NGX_P3X_AUTH_CRAM_MD5|NGX_P3X_AUTH_EXTERNAL))
        {
            ngx_p3x_out_literal(ctx, "SASL");

            if (methods & NGX_P3X_AUTH_PLAIN) {
                ngx_p3x_out_literal(ctx, " PLAIN");
            }

            if (methods & NGX_P3X_AUTH_LOGIN) {
                ngx_p3x_out_literal(ctx, " LOGIN");
            }

            if (methods & NGX_P3X_AUTH_CRAM_MD5) {
                ngx_p3x_out_literal(ctx, " CRAM-MD5");
            }

            if (methods & NGX_P3X_AUTH_EXTERNAL) {
                ngx_p3x_out_literal(ctx, " EXTERNAL");
            }

            ngx_p3x_out_literal(ctx, CRLF);
        }

        if (ngx_p3x_ssl_starttls(ctx)) {
            ngx_p3x_out_literal(ctx, "STLS" CRLF);
        }

        ngx_p3x_out_literal(ctx, "UTF8 USER" CRLF);
    }

    ngx_p3x_out_literal(ctx, "IMPLEMENTATION ngx_mail_pop3_ext_module/"
                             NGX_P3X_VERSION CRLF
                             "." CRLF);
}


static void
ngx_p3x_quit(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    ctx->quit = 1;

    if (ctx->state != ngx_p3x_state_trans) {
        ngx_p3x_out_literal(ctx, "+OK bye" CRLF);
        return;
    }

    ctx->state = ngx_p3x_state_update;
    ctx->connection->log->action = "in update state";

    /*
     * Even with nothing deleted the commit runs: it frees the lock before
     * "+OK", so that a client that logs in again at once is not [IN-USE].
     */

    if (ngx_p3x_store_commit(ctx, ngx_p3x_committed) != NGX_OK) {
        ngx_p3x_commit_failed(ctx);
        return;
    }

    ctx->busy = 1;
}


static void
ngx_p3x_commit_failed(ngx_p3x_ctx_t *ctx)
{
    ngx_p3x_out_literal(ctx,
                       "-ERR [SYS/TEMP] some deleted messages not removed"
                       CRLF);

    /* nothing was deleted: the log line must not say otherwise */
    ctx->ndeleted = 0;
    ctx->deleted_octets = 0;
}


static void
ngx_p3x_committed(void *data, redisReply *reply)
{
    ngx_p3x_ctx_t *ctx = data;

    ctx->busy = 0;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                      "pop3_ext: commit of \"%V\" failed%s",
                      &ctx->mailbox,
                      ngx_p3x_lock_lost(ctx, reply) ? ": lock lost" : "");
        ngx_p3x_commit_failed(ctx);

    } else {
        ctx->locked = 0;
        ngx_p3x_reply(ctx, "+OK bye, %ui messages left",
                      ctx->nmsgs - ctx->ndeleted);
    }

    ngx_p3x_resume(ctx);
}


/*
 * RFC 6856: names and passwords are octets to this server and messages
 * go out as stored, so UTF-8 needs no mode; the command only confirms it.
 */

static void
ngx_p3x_utf8(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    if (ngx_p3x_extra_args(ctx, cmd)) {
        return;
    }

    ngx_p3x_out_literal(ctx, "+OK UTF-8 enabled" CRLF);
}


/* TRANSACTION */

static void
ngx_p3x_noop(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    if (ngx_p3x_extra_args(ctx, cmd)) {
        return;
    }

    ngx_p3x_out_literal(ctx, "+OK" CRLF);
}


static void
ngx_p3x_stat(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    if (ngx_p3x_extra_args(ctx, cmd)) {
        return;
    }

    ngx_p3x_reply(ctx, "+OK %ui %O", ctx->nmsgs - ctx->ndeleted,
                  ctx->octets - ctx->deleted_octets);
}


/*
 * The message a command names, or NULL after the error reply.  A bad
 * number is a client error; a deleted or missing message is not.
 */

static ngx_p3x_msg_t *
ngx_p3x_message(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd, ngx_uint_t nargs)
{
    ngx_int_t       n;
    ngx_p3x_msg_t  *msg;

    if (cmd->nargs != nargs) {
        ngx_p3x_error(ctx, nargs == 1 ? "-ERR one message number expected"
                                      : "-ERR two numbers expected");
        return NULL;
    }

    n = ngx_p3x_parse_number(&cmd->args[0]);

    if (n == NGX_ERROR) {
        ngx_p3x_error(ctx, "-ERR invalid message number");
        return NULL;
    }

    if (n == 0 || (ngx_uint_t) n > ctx->nmsgs) {
        ngx_p3x_out_literal(ctx, "-ERR no such message" CRLF);
        return NULL;
    }

    msg = &ctx->msgs[n - 1];

    if (msg->deleted) {
        ngx_p3x_reply(ctx, "-ERR message %i is deleted", n);
        return NULL;
    }

    return msg;
}


static void
ngx_p3x_list(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    ngx_p3x_msg_t  *msg;

    if (cmd->nargs == 0) {
        ngx_p3x_reply(ctx, "+OK %ui messages (%O octets)",
                      ctx->nmsgs - ctx->ndeleted,
                      ctx->octets - ctx->deleted_octets);
        ctx->stream = ngx_p3x_stream_list;
        ctx->stream_next = 0;
        return;
    }

    msg = ngx_p3x_message(ctx, cmd, 1);

    if (msg) {
        ngx_p3x_reply(ctx, "+OK %ui %uD", msg - ctx->msgs + 1, msg->size);
    }
}


static void
ngx_p3x_uidl(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    ngx_p3x_msg_t  *msg;

    if (cmd->nargs == 0) {
        ngx_p3x_out_literal(ctx, "+OK unique-id listing follows" CRLF);
        ctx->stream = ngx_p3x_stream_uidl;
        ctx->stream_next = 0;
        return;
    }

    msg = ngx_p3x_message(ctx, cmd, 1);

    if (msg) {
        ngx_p3x_reply(ctx, "+OK %ui %*s", msg - ctx->msgs + 1,
                      (size_t) msg->uid_len, msg->uid);
    }
}


/*
 * Continues a multi-line reply.  NGX_OK: it is complete; NGX_AGAIN: the
 * buffer must drain first, or a body chunk is on its way (ctx->busy).
 */

static ngx_int_t
ngx_p3x_stream(ngx_p3x_ctx_t *ctx)
{
    u_char         *p;
    ngx_buf_t      *b;
    ngx_p3x_msg_t  *msg;

    b = ctx->out;

    if (ctx->stream == ngx_p3x_stream_body) {
        return ngx_p3x_body_next(ctx);
    }

    while (ctx->stream_next < ctx->nmsgs) {

        if ((size_t) (b->end - b->last) < P3X_UID_MAX + NGX_INT_T_LEN + 8) {
            return NGX_AGAIN;
        }

        msg = &ctx->msgs[ctx->stream_next++];

        if (msg->deleted) {
            continue;
        }

        if (ctx->stream == ngx_p3x_stream_list) {
            p = ngx_sprintf(b->last, "%ui %uD" CRLF,
                            msg - ctx->msgs + 1, msg->size);

        } else {
            p = ngx_sprintf(b->last, "%ui %*s" CRLF, msg - ctx->msgs + 1,
                            (size_t) msg->uid_len, msg->uid);
        }

        b->last = p;
    }

    if ((size_t) (b->end - b->last) < 3) {
        return NGX_AGAIN;
    }

    b->last = ngx_cpymem(b->last, "." CRLF, 3);
    ctx->stream = ngx_p3x_stream_none;

    return NGX_OK;
}


static void
ngx_p3x_retr(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    ngx_p3x_msg_t  *msg;

    msg = ngx_p3x_message(ctx, cmd, 1);

    if (msg) {
        ngx_p3x_body_start(ctx, msg, -1);
    }
}


static void
ngx_p3x_top(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    ngx_int_t       lines;
    ngx_p3x_msg_t  *msg;

    if (cmd->nargs != 2) {
        ngx_p3x_error(ctx, "-ERR TOP takes a message number and a count");
        return;
    }

    lines = ngx_p3x_parse_number(&cmd->args[1]);

    if (lines == NGX_ERROR) {
        ngx_p3x_error(ctx, "-ERR invalid line count");
        return;
    }

    msg = ngx_p3x_message(ctx, cmd, 2);

    if (msg) {
        ngx_p3x_body_start(ctx, msg, lines);
    }
}


/* RETR (lines == -1) and TOP: the "+OK" waits for the first chunk, so
 * that a store failure can still be answered with -ERR */

static void
ngx_p3x_body_start(ngx_p3x_ctx_t *ctx, ngx_p3x_msg_t *msg, off_t lines)
{
    ctx->stream = ngx_p3x_stream_body;
    ctx->body_msg = msg;
    ctx->body_offset = 0;
    ctx->body_bol = 1;
    ctx->body_blank = 0;
    ctx->body_in_header = (lines >= 0);
    ctx->top_lines = lines;
    ctx->body_pending = 0;
}


/*
 * The next chunk is asked for as soon as the buffer has room for it,
 * while the one before is still going out: Redis and the client work at
 * the same time, and a slow client still holds two chunks at most.
 */

static ngx_int_t
ngx_p3x_body_next(ngx_p3x_ctx_t *ctx)
{
    size_t      room;
    ngx_buf_t  *b;

    b = ctx->out;

    if ((size_t) (b->end - b->start) < ngx_p3x_out_body_size(ctx)) {

        /* replies before the body go out first, then the buffer grows */

        if (b->last > b->pos) {
            return NGX_AGAIN;
        }

        if (ngx_p3x_out_alloc(ctx, ngx_p3x_out_body_size(ctx)) != NGX_OK) {
            return NGX_ERROR;
        }

        b = ctx->out;
    }

    if (b->last > b->pos && ngx_p3x_out_flush(ctx) == NGX_ERROR) {
        return NGX_ERROR;
    }

    room = ngx_p3x_out_chunk_room(ctx);

    if ((size_t) (b->end - b->last) < room && b->pos > b->start) {
        b->last = ngx_movemem(b->start, b->pos, b->last - b->pos);
        b->pos = b->start;
    }

    if ((size_t) (b->end - b->last) < room) {
        return NGX_AGAIN;
    }

    return ngx_p3x_body_fetch(ctx);
}


static ngx_int_t
ngx_p3x_body_fetch(ngx_p3x_ctx_t *ctx)
{
    size_t          len;
    ngx_p3x_msg_t  *msg;

    msg = ctx->body_msg;
    len = ngx_min(ctx->conf->chunk_size,
                  (size_t) (msg->size - ctx->body_offset));

    if (len == 0) {
        /* an empty message: nothing to fetch */
        ngx_p3x_body_chunk(ctx, NULL);
        return ctx->stream == ngx_p3x_stream_none ? NGX_OK : NGX_ERROR;
    }

    if (ngx_p3x_store_fetch(ctx, msg, ctx->body_offset, len,
                            ngx_p3x_body_chunk)
        != NGX_OK)
    {
        if (ctx->body_offset) {
            return NGX_ERROR;
        }

        ctx->stream = ngx_p3x_stream_none;
        ngx_p3x_out_literal(ctx,
                           "-ERR [SYS/TEMP] mail store unavailable" CRLF);
        return NGX_OK;
    }

    ctx->busy = 1;
    ctx->body_pending = 1;

    return NGX_AGAIN;
}


static void
ngx_p3x_body_chunk(void *data, redisReply *reply)
{
    ngx_p3x_ctx_t *ctx = data;

    u_char         *p;
    size_t          len;
    ngx_buf_t      *b;
    ngx_p3x_msg_t  *msg;

    msg = ctx->body_msg;
    b = ctx->out;

    if (ctx->body_pending) {
        ctx->busy = 0;
        ctx->body_pending = 0;

        if (reply == NULL || reply->type != REDIS_REPLY_STRING
            || reply->len == 0)
        {
            ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                          "pop3_ext: message %ui of \"%V\" is unavailable "
                          "at offset %O",
                          msg - ctx->msgs + 1, &ctx->mailbox,
                          ctx->body_offset);

            if (ctx->body_offset) {
                /* the reply is half sent: only closing can end it */
                ngx_p3x_close(ctx);
                return;
            }

            ctx->stream = ngx_p3x_stream_none;
            ngx_p3x_out_literal(ctx,
                               "-ERR [SYS/TEMP] message unavailable" CRLF);
            ngx_p3x_resume(ctx);
            return;
        }

        /* never more than asked for: the buffer has room for that */

        p = (u_char *) reply->str;
        len = ngx_min(reply->len,
                      ngx_min(ctx->conf->chunk_size,
                              (size_t) (msg->size - ctx->body_offset)));

    } else {
        p = NULL;
        len = 0;
    }

    if (ctx->body_offset == 0) {
        if (ctx->top_lines < 0) {
            ngx_p3x_reply(ctx, "+OK %uD octets", msg->size);

        } else {
            ngx_p3x_out_literal(ctx, "+OK" CRLF);
        }
    }

    ngx_p3x_out_body(ctx, p, len);

    ctx->body_offset += len;

    if (ctx->body_offset >= msg->size
        || len < ctx->conf->chunk_size
        || (ctx->top_lines == 0 && !ctx->body_in_header))
    {
        if (!ctx->body_bol) {
            b->last = ngx_cpymem(b->last, CRLF, 2);
        }

        b->last = ngx_cpymem(b->last, "." CRLF, 3);
        ctx->stream = ngx_p3x_stream_none;

        if (ctx->top_lines < 0) {
            ctx->retrieved++;
            ctx->retrieved_octets += msg->size;
            ctx->last = ngx_max(ctx->last, (ngx_uint_t) (msg - ctx->msgs + 1));
        }
    }

    if (p) {
        ngx_p3x_resume(ctx);
    }
}


static void
ngx_p3x_dele(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    ngx_p3x_msg_t  *msg;

    msg = ngx_p3x_message(ctx, cmd, 1);

    if (msg == NULL) {
        return;
    }

    if (ngx_p3x_store_mark(ctx, msg, ngx_p3x_dele_marked) != NGX_OK) {
        ngx_p3x_out_literal(ctx,
                           "-ERR [SYS/TEMP] mail store unavailable" CRLF);
        return;
    }

    ctx->body_msg = msg;
    ctx->busy = 1;
}


static void
ngx_p3x_dele_marked(void *data, redisReply *reply)
{
    ngx_p3x_ctx_t *ctx = data;

    ngx_p3x_msg_t  *msg;

    ctx->busy = 0;
    msg = ctx->body_msg;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_p3x_lock_lost(ctx, reply);
        ngx_p3x_out_literal(ctx,
                           "-ERR [SYS/TEMP] mail store unavailable" CRLF);

    } else {
        msg->deleted = 1;
        ctx->ndeleted++;
        ctx->deleted_octets += msg->size;

        ngx_p3x_reply(ctx, "+OK message %ui deleted", msg - ctx->msgs + 1);
    }

    ngx_p3x_resume(ctx);
}


static void
ngx_p3x_rset(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    if (ngx_p3x_extra_args(ctx, cmd)) {
        return;
    }

    if (ctx->ndeleted == 0) {
        ngx_p3x_rset_cleared(ctx, NULL);
        return;
    }

    if (ngx_p3x_store_mark(ctx, NULL, ngx_p3x_rset_cleared) != NGX_OK) {
        ngx_p3x_out_literal(ctx,
                           "-ERR [SYS/TEMP] mail store unavailable" CRLF);
        return;
    }

    ctx->busy = 1;
}


static void
ngx_p3x_rset_cleared(void *data, redisReply *reply)
{
    ngx_p3x_ctx_t *ctx = data;

    ngx_uint_t  i, was_busy;

    was_busy = ctx->busy;
    ctx->busy = 0;

    if (was_busy && (reply == NULL || reply->type != REDIS_REPLY_INTEGER)) {
        ngx_p3x_lock_lost(ctx, reply);
        ngx_p3x_out_literal(ctx,
                           "-ERR [SYS/TEMP] mail store unavailable" CRLF);
        ngx_p3x_resume(ctx);
        return;
    }

    for (i = 0; i < ctx->nmsgs; i++) {
        ctx->msgs[i].deleted = 0;
    }

    ctx->ndeleted = 0;
    ctx->deleted_octets = 0;
    ctx->last = 0;

    ngx_p3x_reply(ctx, "+OK maildrop has %ui messages (%O octets)",
                  ctx->nmsgs, ctx->octets);

    if (was_busy) {
        ngx_p3x_resume(ctx);
    }
}


static void
ngx_p3x_last(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    if (ngx_p3x_extra_args(ctx, cmd)) {
        return;
    }

    ngx_p3x_reply(ctx, "+OK %ui", ctx->last);
}
