
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * An LMTP session (RFC 2033): its events, the command loop, the
 * commands, and closing.  The message itself, recipient look-ups and the
 * per-recipient replies are in _lmtp_data.c.
 *
 * One loop, ngx_p3x_lmtp_resume(), drives a session, as _session.c's
 * does for POP3: it finishes what the session waits for (a look-up, room
 * for the next chunk, the deliveries), writes per-recipient replies,
 * decodes message octets or executes buffered commands in order
 * (PIPELINING, RFC 2920), flushes the replies and reads more.  Nothing
 * in it blocks.  While Redis is behind with a message's chunks, the loop
 * stops reading: the client is held back by TCP, and a session holds a
 * bounded amount of memory whatever the size of the message.
 *
 * Completions (Redis replies) record results, lower ctx->pending and
 * post ctx->wake; they never run the loop, write to the client or close
 * the session.  Closing cancels the session's requests, so none
 * completes after it.
 */


#include "ngx_mail_pop3_ext_lmtp.h"


typedef void (*ngx_p3x_lmtp_command_pt)(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_p3x_lmtp_cmd_t *cmd);


static void ngx_p3x_lmtp_wake_handler(ngx_event_t *ev);
static void ngx_p3x_lmtp_read_handler(ngx_event_t *rev);
static void ngx_p3x_lmtp_write_handler(ngx_event_t *wev);
static void ngx_p3x_lmtp_resume(ngx_p3x_lmtp_ctx_t *ctx);
static ngx_int_t ngx_p3x_lmtp_read(ngx_p3x_lmtp_ctx_t *ctx);
static ngx_int_t ngx_p3x_lmtp_flush(ngx_p3x_lmtp_ctx_t *ctx);
static size_t ngx_p3x_lmtp_room(ngx_p3x_lmtp_ctx_t *ctx);
static void ngx_p3x_lmtp_vreply(ngx_p3x_lmtp_ctx_t *ctx, const char *fmt,
    va_list args);
static ngx_int_t ngx_p3x_lmtp_next_command(ngx_p3x_lmtp_ctx_t *ctx);
static void ngx_p3x_lmtp_dispatch(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_p3x_lmtp_cmd_t *cmd);
static ngx_int_t ngx_p3x_lmtp_begin(ngx_p3x_lmtp_ctx_t *ctx);
static void ngx_p3x_lmtp_end(ngx_p3x_lmtp_ctx_t *ctx);
static void ngx_p3x_lmtp_starttls(ngx_p3x_lmtp_ctx_t *ctx);
static void ngx_p3x_lmtp_timeout(ngx_p3x_lmtp_ctx_t *ctx);
static void ngx_p3x_lmtp_close(ngx_p3x_lmtp_ctx_t *ctx);
static void ngx_p3x_lmtp_cleanup(void *data);

static void ngx_p3x_lmtp_lhlo(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_p3x_lmtp_cmd_t *cmd);
static void ngx_p3x_lmtp_mail(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_p3x_lmtp_cmd_t *cmd);
static void ngx_p3x_lmtp_rcpt(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_p3x_lmtp_cmd_t *cmd);
static void ngx_p3x_lmtp_data(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_p3x_lmtp_cmd_t *cmd);
static void ngx_p3x_lmtp_bdat(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_p3x_lmtp_cmd_t *cmd);
static ngx_int_t ngx_p3x_lmtp_bdat_start(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_p3x_lmtp_cmd_t *cmd, ngx_uint_t discard);
static void ngx_p3x_lmtp_rset(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_p3x_lmtp_cmd_t *cmd);
static void ngx_p3x_lmtp_noop(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_p3x_lmtp_cmd_t *cmd);
static void ngx_p3x_lmtp_quit(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_p3x_lmtp_cmd_t *cmd);
static void ngx_p3x_lmtp_vrfy(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_p3x_lmtp_cmd_t *cmd);
static void ngx_p3x_lmtp_stls(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_p3x_lmtp_cmd_t *cmd);


void
ngx_p3x_lmtp_init_session(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_p3x_lmtp_ctx_t            *ctx;
    ngx_pool_cleanup_t            *cln;
    ngx_mail_core_srv_conf_t      *cscf;
    ngx_mail_pop3_ext_srv_conf_t  *pcf;

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);
    pcf = ngx_mail_get_module_srv_conf(s, ngx_mail_pop3_ext_module);

    ctx = ngx_pcalloc(c->pool, sizeof(ngx_p3x_lmtp_ctx_t));
    if (ctx == NULL) {
        ngx_mail_close_connection(c);
        return;
    }

    ngx_mail_set_ctx(s, ctx, ngx_mail_pop3_ext_lmtp_module);

    ctx->session = s;
    ctx->connection = c;
    ctx->conf = ngx_mail_get_module_srv_conf(s,
                                             ngx_mail_pop3_ext_lmtp_module);
    ctx->redis = pcf->redis;

    ngx_queue_init(&ctx->requests);

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        ngx_mail_close_connection(c);
        return;
    }

    cln->handler = ngx_p3x_lmtp_cleanup;
    cln->data = ctx;

    ctx->wake.handler = ngx_p3x_lmtp_wake_handler;
    ctx->wake.data = ctx;
    ctx->wake.log = c->log;

    if (ngx_p3x_io_alloc(&ctx->out, NGX_P3X_LMTP_OUT_SIZE, c->log) != NGX_OK) {
        ngx_mail_close_connection(c);
        return;
    }

    /* replies are whole lines already: Nagle would only delay them */
    if (ngx_tcp_nodelay(c) != NGX_OK) {
        ngx_mail_close_connection(c);
        return;
    }

    c->log->action = "in lmtp state";

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "pop3_ext lmtp: session start");

    /*
     * RFC 5321, 3.1: a server that refuses a client says 554 in its
     * greeting and then answers every command but QUIT with an error.
     */

    if (ctx->conf->allow
        && ngx_cidr_match(c->sockaddr, ctx->conf->allow) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_NOTICE, c->log, 0,
                      "pop3_ext: LMTP client refused by "
                      "pop3_ext_lmtp_allow");

        ctx->refused = 1;
        ngx_p3x_lmtp_reply(ctx, "554 5.7.1 %V no LMTP service for your "
                           "address", &cscf->server_name);

    } else {
        ngx_p3x_lmtp_reply(ctx, "220 %V LMTP ready", &cscf->server_name);
    }

    ngx_p3x_lmtp_init_protocol(c->read);
}


/*
 * Also the entry point after a STARTTLS handshake: what the client sent
 * in plaintext before it is dropped, and the session starts over without
 * a greeting (RFC 3207, 4.2: the client says LHLO again).
 */

void
ngx_p3x_lmtp_init_protocol(ngx_event_t *rev)
{
    ngx_connection_t    *c;
    ngx_mail_session_t  *s;
    ngx_p3x_lmtp_ctx_t  *ctx;

    c = rev->data;
    s = c->data;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_pop3_ext_lmtp_module);

    ctx->state = ngx_p3x_lmtp_state_init;
    ctx->lhlo = 0;
    ctx->skipping = 0;
    ctx->starttls = 0;

    if (ctx->in.start) {
        ctx->in.pos = ctx->in.start;
        ctx->in.last = ctx->in.start;
    }

    c->read->handler = ngx_p3x_lmtp_read_handler;
    c->write->handler = ngx_p3x_lmtp_write_handler;

    ngx_p3x_lmtp_resume(ctx);
}


ngx_int_t
ngx_p3x_lmtp_dummy_parse(ngx_mail_session_t *s)
{
    return NGX_MAIL_PARSE_INVALID_COMMAND;
}


void
ngx_p3x_lmtp_auth_state(ngx_event_t *rev)
{
    ngx_p3x_lmtp_read_handler(rev);
}


static void
ngx_p3x_lmtp_wake_handler(ngx_event_t *ev)
{
    ngx_p3x_lmtp_resume(ev->data);
}


static void
ngx_p3x_lmtp_read_handler(ngx_event_t *rev)
{
    ngx_connection_t    *c;
    ngx_mail_session_t  *s;
    ngx_p3x_lmtp_ctx_t  *ctx;

    c = rev->data;
    s = c->data;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_pop3_ext_lmtp_module);

    if (rev->timedout) {
        ngx_p3x_lmtp_timeout(ctx);
        return;
    }

    ngx_p3x_lmtp_resume(ctx);
}


static void
ngx_p3x_lmtp_write_handler(ngx_event_t *wev)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_mail_session_t  *s;
    ngx_p3x_lmtp_ctx_t  *ctx;

    c = wev->data;
    s = c->data;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_pop3_ext_lmtp_module);

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "client timed out");
        c->timedout = 1;
        ngx_p3x_lmtp_close(ctx);
        return;
    }

    rc = ngx_p3x_lmtp_flush(ctx);

    if (rc == NGX_ERROR) {
        ngx_p3x_lmtp_close(ctx);
        return;
    }

    if (rc == NGX_OK) {
        ngx_p3x_lmtp_resume(ctx);
    }
}


/* RFC 5321, 4.5.3.2: the server may close an idle client, with 421 */

static void
ngx_p3x_lmtp_timeout(ngx_p3x_lmtp_ctx_t *ctx)
{
    ngx_connection_t          *c;
    ngx_mail_core_srv_conf_t  *cscf;

    c = ctx->connection;

    ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT, "client timed out");
    c->timedout = 1;

    cscf = ngx_mail_get_module_srv_conf(ctx->session, ngx_mail_core_module);

    ctx->out.pos = ctx->out.start;
    ctx->out.last = ctx->out.start;

    ngx_p3x_lmtp_reply(ctx, "421 4.4.2 %V timeout exceeded",
                       &cscf->server_name);

    /* once, without waiting: the client is gone or asleep */
    (void) c->send(c, ctx->out.pos, ctx->out.last - ctx->out.pos);

    ngx_p3x_lmtp_close(ctx);
}


static void
ngx_p3x_lmtp_resume(ngx_p3x_lmtp_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_connection_t          *c;
    ngx_mail_core_srv_conf_t  *cscf;

    c = ctx->connection;

    for ( ;; ) {

        if (ctx->fatal) {
            ngx_p3x_lmtp_close(ctx);
            return;
        }

        switch (ctx->wait) {

        case ngx_p3x_lmtp_wait_lookup:
            if (ctx->pending) {
                return;
            }

            ctx->wait = ngx_p3x_lmtp_wait_none;
            ngx_p3x_lmtp_lookup_done(ctx);
            continue;

        case ngx_p3x_lmtp_wait_window:
            if (ngx_p3x_lmtp_body_window(ctx) != NGX_OK) {
                return;
            }

            ctx->wait = ngx_p3x_lmtp_wait_none;
            break;

        case ngx_p3x_lmtp_wait_delivery:
            rc = ngx_p3x_lmtp_deliver(ctx);

            if (rc == NGX_AGAIN) {
                return;
            }

            ctx->wait = ngx_p3x_lmtp_wait_none;
            ctx->replying = 1;
            ctx->reply_next = 0;
            break;

        default:
            break;
        }

        if (ctx->replying) {
            if (ngx_p3x_lmtp_replies(ctx) == NGX_AGAIN) {
                goto flush;
            }

            ctx->replying = 0;
            ngx_p3x_lmtp_end(ctx);
            continue;
        }

        if (ctx->quit) {
            rc = ngx_p3x_lmtp_flush(ctx);

            if (rc != NGX_AGAIN) {
                ngx_p3x_lmtp_close(ctx);
            }

            return;
        }

        /*
         * a command writes at most two replies (an error, then 421), or
         * LHLO's lines, all but the first of them short
         */

        if (ngx_p3x_lmtp_room(ctx) < 2 * NGX_P3X_LMTP_REPLY_MAX) {
            goto flush;
        }

        if (ctx->starttls) {
            rc = ngx_p3x_lmtp_flush(ctx);

            if (rc == NGX_ERROR) {
                ngx_p3x_lmtp_close(ctx);

            } else if (rc == NGX_OK) {
                ngx_p3x_lmtp_starttls(ctx);
            }

            return;
        }

        if (ctx->state == ngx_p3x_lmtp_state_data
            || ctx->state == ngx_p3x_lmtp_state_bdat)
        {
            rc = ngx_p3x_lmtp_body_read(ctx);

            if (rc == NGX_ERROR) {
                ngx_p3x_lmtp_close(ctx);
                return;
            }

            if (rc == NGX_BUSY) {
                /* Redis is behind: read nothing until it catches up */

                ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                               "pop3_ext lmtp: %ui chunks on their way, "
                               "reading stops", ctx->pending);

                ctx->wait = ngx_p3x_lmtp_wait_window;
                return;
            }

            if (rc == NGX_OK) {
                continue;
            }

            /* NGX_AGAIN: the buffer is used up */

            goto read;
        }

        rc = ngx_p3x_lmtp_next_command(ctx);

        if (rc == NGX_OK) {
            continue;
        }

        if (rc == NGX_ERROR) {
            ngx_p3x_lmtp_close(ctx);
            return;
        }

    read:

        rc = ngx_p3x_lmtp_flush(ctx);

        if (rc == NGX_ERROR) {
            ngx_p3x_lmtp_close(ctx);
            return;
        }

        if (rc == NGX_AGAIN) {
            return;
        }

        rc = ngx_p3x_lmtp_read(ctx);

        if (rc == NGX_OK) {
            continue;
        }

        if (rc == NGX_ERROR) {
            ngx_p3x_lmtp_close(ctx);
            return;
        }

        /* NGX_AGAIN: idle until the client speaks, with no input buffer */

        if (ctx->in.pos == ctx->in.last) {
            ngx_p3x_io_free(&ctx->in, 0);
        }

        cscf = ngx_mail_get_module_srv_conf(ctx->session,
                                            ngx_mail_core_module);

        if (ngx_p3x_io_wait(c->read, cscf->timeout) != NGX_OK) {
            ngx_p3x_lmtp_close(ctx);
        }

        return;

    flush:

        rc = ngx_p3x_lmtp_flush(ctx);

        if (rc == NGX_ERROR) {
            ngx_p3x_lmtp_close(ctx);
            return;
        }

        if (rc == NGX_AGAIN) {
            return;
        }
    }
}


static ngx_int_t
ngx_p3x_lmtp_read(ngx_p3x_lmtp_ctx_t *ctx)
{
    if (ngx_p3x_io_alloc(&ctx->in, NGX_P3X_LMTP_IN_SIZE, ctx->connection->log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_p3x_io_recv(ctx->connection, &ctx->in);
}


static size_t
ngx_p3x_lmtp_room(ngx_p3x_lmtp_ctx_t *ctx)
{
    return ctx->out.end - ctx->out.last;
}


static ngx_int_t
ngx_p3x_lmtp_flush(ngx_p3x_lmtp_ctx_t *ctx)
{
    ngx_mail_core_srv_conf_t  *cscf;

    cscf = ngx_mail_get_module_srv_conf(ctx->session, ngx_mail_core_module);

    return ngx_p3x_io_flush(ctx->connection, &ctx->out, cscf->timeout);
}


/* one reply line; the room for it was checked before the command */

void
ngx_p3x_lmtp_reply(ngx_p3x_lmtp_ctx_t *ctx, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    ngx_p3x_lmtp_vreply(ctx, fmt, args);
    va_end(args);
}


/*
 * RFC 5321, 4.5.3.1.5: a reply line is at most 512 octets with its CRLF;
 * a longer one (an address echoed) is cut there.
 */

static void
ngx_p3x_lmtp_vreply(ngx_p3x_lmtp_ctx_t *ctx, const char *fmt, va_list args)
{
    u_char  *line;

    line = ngx_p3x_io_vline(&ctx->out, NGX_P3X_LMTP_REPLY_MAX, fmt, args);

    if (line) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                       "pop3_ext lmtp: reply \"%*s\"",
                       (size_t) (ctx->out.last - 2 - line), line);
    }
}


/* a client error; nginx's max_errors ends a session that keeps erring */

void
ngx_p3x_lmtp_error(ngx_p3x_lmtp_ctx_t *ctx, const char *fmt, ...)
{
    va_list                    args;
    ngx_mail_core_srv_conf_t  *cscf;

    va_start(args, fmt);
    ngx_p3x_lmtp_vreply(ctx, fmt, args);
    va_end(args);

    cscf = ngx_mail_get_module_srv_conf(ctx->session, ngx_mail_core_module);

    if (++ctx->session->errors >= cscf->max_errors) {
        ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                      "client sent too many invalid commands");
        ngx_p3x_lmtp_reply(ctx, "421 4.7.0 %V too many errors",
                           &cscf->server_name);
        ctx->quit = 1;
    }
}


/*
 * Executes one buffered command.  NGX_AGAIN: no whole line is buffered;
 * NGX_OK: a command ran (it may have made the session wait).
 */

static ngx_int_t
ngx_p3x_lmtp_next_command(ngx_p3x_lmtp_ctx_t *ctx)
{
    u_char              *next;
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_p3x_lmtp_cmd_t   cmd;

    b = &ctx->in;

    if (b->start == NULL) {
        return NGX_AGAIN;
    }

    if (ctx->skipping) {
        if (ngx_p3x_io_skip_line(b) != NGX_OK) {
            return NGX_AGAIN;
        }

        ctx->skipping = 0;
    }

    if (b->pos == b->last) {
        return NGX_AGAIN;
    }

    rc = ngx_p3x_lmtp_parse_command(b->pos, b->last, &cmd, &next);

    if (rc == NGX_AGAIN) {

        if ((size_t) (b->last - b->pos) < NGX_P3X_LMTP_LINE_MAX) {
            return NGX_AGAIN;
        }

        /* no line end within the limit: drop the rest of the line */

        ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                      "client sent too long command");

        b->pos = b->last;
        ctx->skipping = 1;

        ngx_p3x_lmtp_error(ctx, "500 5.5.2 line too long");
        return NGX_OK;
    }

    b->pos = next;

    if (cmd.line.len + 2 > NGX_P3X_LMTP_LINE_MAX) {
        ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                      "client sent too long command");
        ngx_p3x_lmtp_error(ctx, "500 5.5.2 line too long");
        return NGX_OK;
    }

    if (rc == NGX_P3X_LMTP_PARSE_INVALID) {
        ngx_p3x_lmtp_error(ctx, "500 5.5.2 invalid octets in command");
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "pop3_ext lmtp: command \"%V\"", &cmd.name);

    ngx_p3x_lmtp_dispatch(ctx, &cmd);

    return NGX_OK;
}


static void
ngx_p3x_lmtp_dispatch(ngx_p3x_lmtp_ctx_t *ctx, ngx_p3x_lmtp_cmd_t *cmd)
{
    ngx_p3x_lmtp_command_pt  handler;

    if (ctx->refused) {
        if (cmd->command == ngx_p3x_lmtp_cmd_quit) {
            ngx_p3x_lmtp_quit(ctx, cmd);
            return;
        }

        ngx_p3x_lmtp_error(ctx, "554 5.7.1 no LMTP service for your "
                           "address");

        /* a BDAT chunk is read and dropped, or it would be commands */

        if (cmd->command == ngx_p3x_lmtp_cmd_bdat
            && ngx_p3x_lmtp_bdat_start(ctx, cmd, 1) == NGX_OK)
        {
            ctx->state = ngx_p3x_lmtp_state_bdat;
        }

        return;
    }

    switch (cmd->command) {

    case ngx_p3x_lmtp_cmd_lhlo:
        handler = ngx_p3x_lmtp_lhlo;
        break;

    case ngx_p3x_lmtp_cmd_mail:
        handler = ngx_p3x_lmtp_mail;
        break;

    case ngx_p3x_lmtp_cmd_rcpt:
        handler = ngx_p3x_lmtp_rcpt;
        break;

    case ngx_p3x_lmtp_cmd_data:
        handler = ngx_p3x_lmtp_data;
        break;

    case ngx_p3x_lmtp_cmd_bdat:
        handler = ngx_p3x_lmtp_bdat;
        break;

    case ngx_p3x_lmtp_cmd_rset:
        handler = ngx_p3x_lmtp_rset;
        break;

    case ngx_p3x_lmtp_cmd_noop:
        handler = ngx_p3x_lmtp_noop;
        break;

    case ngx_p3x_lmtp_cmd_quit:
        handler = ngx_p3x_lmtp_quit;
        break;

    case ngx_p3x_lmtp_cmd_vrfy:
        handler = ngx_p3x_lmtp_vrfy;
        break;

    case ngx_p3x_lmtp_cmd_starttls:
        handler = ngx_p3x_lmtp_stls;
        break;

    case ngx_p3x_lmtp_cmd_expn:
        ngx_p3x_lmtp_reply(ctx, "502 5.5.1 EXPN not available");
        return;

    case ngx_p3x_lmtp_cmd_helo:
        /* RFC 2033, 4.1: LMTP has no HELO or EHLO */
        ngx_p3x_lmtp_error(ctx, "500 5.5.1 this is LMTP: use LHLO");
        return;

    case ngx_p3x_lmtp_cmd_help:
        ngx_p3x_lmtp_reply(ctx, "214 2.0.0 LHLO MAIL RCPT DATA BDAT RSET "
                           "NOOP QUIT VRFY STARTTLS");
        return;

    default:
        ngx_p3x_lmtp_error(ctx, "500 5.5.1 unknown command");
        return;
    }

    handler(ctx, cmd);
}


static void
ngx_p3x_lmtp_lhlo(ngx_p3x_lmtp_ctx_t *ctx, ngx_p3x_lmtp_cmd_t *cmd)
{
    ngx_mail_core_srv_conf_t  *cscf;

    if (cmd->arg.len == 0) {
        ngx_p3x_lmtp_error(ctx, "501 5.5.4 LHLO needs a host name");
        return;
    }

    /* RFC 5321, 4.1.4: LHLO in a transaction resets it */
    ngx_p3x_lmtp_end(ctx);

    cscf = ngx_mail_get_module_srv_conf(ctx->session, ngx_mail_core_module);

    ngx_p3x_lmtp_reply(ctx, "250-%V", &cscf->server_name);
    ngx_p3x_lmtp_reply(ctx, "250-PIPELINING");
    ngx_p3x_lmtp_reply(ctx, "250-ENHANCEDSTATUSCODES");
    ngx_p3x_lmtp_reply(ctx, "250-8BITMIME");
    ngx_p3x_lmtp_reply(ctx, "250-SMTPUTF8");
    ngx_p3x_lmtp_reply(ctx, "250-CHUNKING");

    if (ngx_p3x_ssl_starttls(ctx->session)) {
        ngx_p3x_lmtp_reply(ctx, "250-STARTTLS");
    }

    ngx_p3x_lmtp_reply(ctx, "250 SIZE %O", ctx->conf->max_size);

    ctx->lhlo = 1;
    ctx->state = ngx_p3x_lmtp_state_ready;
}


static void
ngx_p3x_lmtp_mail(ngx_p3x_lmtp_ctx_t *ctx, ngx_p3x_lmtp_cmd_t *cmd)
{
    off_t       size;
    ngx_int_t   rc;
    ngx_str_t   path, params, key, value;

    if (!ctx->lhlo) {
        ngx_p3x_lmtp_error(ctx, "503 5.5.1 LHLO first");
        return;
    }

    if (ctx->state != ngx_p3x_lmtp_state_ready) {
        ngx_p3x_lmtp_error(ctx, "503 5.5.1 MAIL already given");
        return;
    }

    if (ngx_p3x_ssl_starttls_only(ctx->session)) {
        ngx_p3x_lmtp_error(ctx, "530 5.7.0 must issue a STARTTLS command "
                           "first");
        return;
    }

    if (ngx_p3x_lmtp_parse_path(&cmd->arg, "FROM", &path, &params)
        != NGX_OK)
    {
        ngx_p3x_lmtp_error(ctx, "501 5.5.4 syntax: MAIL FROM:<address>");
        return;
    }

    size = 0;

    for ( ;; ) {
        rc = ngx_p3x_lmtp_next_param(&params, &key, &value);

        if (rc == NGX_DONE) {
            break;
        }

        if (rc == NGX_ERROR) {
            ngx_p3x_lmtp_error(ctx, "501 5.5.4 invalid parameter");
            return;
        }

        if (key.len == 4 && ngx_strncasecmp(key.data, (u_char *) "SIZE", 4)
                            == 0)
        {
            rc = ngx_p3x_lmtp_parse_size(value.data, value.len, &size);

            if (rc == NGX_ERROR) {
                ngx_p3x_lmtp_error(ctx, "501 5.5.4 invalid SIZE");
                return;
            }

            /* RFC 1870, 6.2: 20 digits are a size, if beyond any limit */

            if (rc == NGX_DECLINED || size > ctx->conf->max_size) {
                ngx_p3x_lmtp_reply(ctx, "552 5.3.4 message too big: the "
                                   "limit is %O octets",
                                   ctx->conf->max_size);
                return;
            }

            continue;
        }

        if (key.len == 4 && ngx_strncasecmp(key.data, (u_char *) "BODY", 4)
                            == 0)
        {
            /* octets are stored as they come: 8BITMIME needs nothing */

            if ((value.len == 4
                 && ngx_strncasecmp(value.data, (u_char *) "7BIT", 4) == 0)
                || (value.len == 8
                    && ngx_strncasecmp(value.data, (u_char *) "8BITMIME", 8)
                       == 0))
            {
                continue;
            }

            ngx_p3x_lmtp_error(ctx, "501 5.5.4 BODY is 7BIT or 8BITMIME");
            return;
        }

        if (key.len == 8
            && ngx_strncasecmp(key.data, (u_char *) "SMTPUTF8", 8) == 0
            && value.len == 0)
        {
            /* RFC 6531: names are octets here, UTF-8 ones included */
            continue;
        }

        ngx_p3x_lmtp_error(ctx, "555 5.5.4 unsupported parameter \"%V\"",
                           &key);
        return;
    }

    if (ngx_p3x_lmtp_begin(ctx) != NGX_OK) {
        ngx_p3x_lmtp_reply(ctx, "451 4.3.0 internal server error");
        return;
    }

    ctx->from.data = ngx_pnalloc(ctx->pool, path.len);
    if (ctx->from.data == NULL) {
        ngx_p3x_lmtp_end(ctx);
        ngx_p3x_lmtp_reply(ctx, "451 4.3.0 internal server error");
        return;
    }

    ngx_memcpy(ctx->from.data, path.data, path.len);
    ctx->from.len = path.len;
    ctx->declared = size;

    ctx->state = ngx_p3x_lmtp_state_mail;

    ngx_p3x_lmtp_reply(ctx, "250 2.1.0 sender OK");
}


static void
ngx_p3x_lmtp_rcpt(ngx_p3x_lmtp_ctx_t *ctx, ngx_p3x_lmtp_cmd_t *cmd)
{
    u_char     *p;
    ngx_str_t   path, params;

    if (ctx->state != ngx_p3x_lmtp_state_mail) {
        ngx_p3x_lmtp_error(ctx, "503 5.5.1 MAIL first");
        return;
    }

    /*
     * RFC 3030, 2: the recipients come before the chunks.  A mailbox
     * added now would lack the chunks staged for the others, and the
     * STAGEs on their way point into the array it would be added to.
     */

    if (ctx->bdat_used) {
        ngx_p3x_lmtp_error(ctx, "503 5.5.1 RCPT after BDAT");
        return;
    }

    if (ngx_p3x_lmtp_parse_path(&cmd->arg, "TO", &path, &params) != NGX_OK
        || path.len == 0)
    {
        ngx_p3x_lmtp_error(ctx, "501 5.5.4 syntax: RCPT TO:<address>");
        return;
    }

    if (params.len) {
        ngx_p3x_lmtp_error(ctx, "555 5.5.4 RCPT takes no parameters");
        return;
    }

    if (ctx->rcpts.nelts >= ctx->conf->max_recipients) {
        ngx_p3x_lmtp_reply(ctx, "452 4.5.3 too many recipients");
        return;
    }

    ngx_memzero(&ctx->lookup, sizeof(ngx_p3x_lmtp_lookup_t));

    /* a command line is shorter than NGX_P3X_LMTP_LINE_MAX */

    p = ctx->lookup_buf;
    ngx_memcpy(p, path.data, path.len);
    ctx->lookup.addr.data = p;
    ctx->lookup.addr.len = path.len;

    if (ngx_p3x_lmtp_user_name(&ctx->lookup.addr,
                               ctx->conf->recipient
                               == NGX_P3X_LMTP_RCPT_LOCAL,
                               p + NGX_P3X_LMTP_LINE_MAX, &ctx->lookup.user)
        != NGX_OK)
    {
        ngx_p3x_lmtp_reply(ctx, "550 5.1.1 <%V> user unknown",
                           &ctx->lookup.addr);
        return;
    }

    if (ngx_p3x_lmtp_lookup(ctx) != NGX_OK) {
        ngx_p3x_lmtp_reply(ctx, "451 4.3.0 <%V> mail store unavailable",
                           &ctx->lookup.addr);
        return;
    }

    ctx->wait = ngx_p3x_lmtp_wait_lookup;
}


/* RFC 2033, 4.2: DATA needs a recipient that was accepted */

static void
ngx_p3x_lmtp_data(ngx_p3x_lmtp_ctx_t *ctx, ngx_p3x_lmtp_cmd_t *cmd)
{
    if (ctx->state != ngx_p3x_lmtp_state_mail) {
        ngx_p3x_lmtp_error(ctx, "503 5.5.1 MAIL first");
        return;
    }

    if (cmd->arg.len) {
        ngx_p3x_lmtp_error(ctx, "501 5.5.4 DATA takes no arguments");
        return;
    }

    if (ctx->bdat_used) {
        ngx_p3x_lmtp_error(ctx, "503 5.5.1 DATA after BDAT");
        return;
    }

    if (ctx->rcpts.nelts == 0) {
        ngx_p3x_lmtp_reply(ctx, "503 5.5.1 no valid recipients");
        return;
    }

    if (ngx_p3x_lmtp_body_start(ctx) != NGX_OK) {
        ngx_p3x_lmtp_reply(ctx, "451 4.3.0 internal server error");
        return;
    }

    ctx->state = ngx_p3x_lmtp_state_data;

    ngx_p3x_lmtp_reply(ctx, "354 end data with <CR><LF>.<CR><LF>");
}


/*
 * RFC 3030: BDAT SIZE [LAST].  The chunk follows at once, and is read
 * (and dropped) even when the command is refused, or the octets would be
 * taken for commands.
 */

static void
ngx_p3x_lmtp_bdat(ngx_p3x_lmtp_ctx_t *ctx, ngx_p3x_lmtp_cmd_t *cmd)
{
    if (ngx_p3x_lmtp_bdat_start(ctx, cmd, 0) != NGX_OK) {
        ngx_p3x_lmtp_error(ctx, "501 5.5.4 syntax: BDAT size [LAST]");
        return;
    }

    if (ctx->state != ngx_p3x_lmtp_state_mail) {
        ngx_p3x_lmtp_error(ctx, "503 5.5.1 MAIL first");
        ctx->bdat_discard = 1;

    } else if (ctx->rcpts.nelts == 0) {
        ngx_p3x_lmtp_reply(ctx, "503 5.5.1 no valid recipients");
        ctx->bdat_discard = 1;

    } else if (!ctx->bdat_used) {

        if (ngx_p3x_lmtp_body_start(ctx) != NGX_OK) {
            ngx_p3x_lmtp_reply(ctx, "451 4.3.0 internal server error");
            ctx->bdat_discard = 1;

        } else {
            ctx->bdat_used = 1;
        }
    }

    ctx->state = ngx_p3x_lmtp_state_bdat;
}


/*
 * BDAT's chunk is to be read (the caller then enters the bdat state),
 * kept or dropped; NGX_ERROR: its size is unknown, nothing can be read
 * past it, and the session ends.
 */

static ngx_int_t
ngx_p3x_lmtp_bdat_start(ngx_p3x_lmtp_ctx_t *ctx, ngx_p3x_lmtp_cmd_t *cmd,
    ngx_uint_t discard)
{
    off_t       size;
    ngx_uint_t  last_chunk;

    if (ngx_p3x_lmtp_parse_bdat(&cmd->arg, &size, &last_chunk) != NGX_OK) {
        ctx->quit = 1;
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "pop3_ext lmtp: BDAT chunk of %O%s%s", size,
                   last_chunk ? ", the last" : "",
                   discard ? ", dropped" : "");

    ctx->bdat_size = size;
    ctx->bdat_left = size;
    ctx->bdat_last = last_chunk;
    ctx->bdat_discard = discard;

    return NGX_OK;
}


static void
ngx_p3x_lmtp_rset(ngx_p3x_lmtp_ctx_t *ctx, ngx_p3x_lmtp_cmd_t *cmd)
{
    ngx_p3x_lmtp_end(ctx);

    if (ctx->lhlo) {
        ctx->state = ngx_p3x_lmtp_state_ready;
    }

    ngx_p3x_lmtp_reply(ctx, "250 2.0.0 OK");
}


static void
ngx_p3x_lmtp_noop(ngx_p3x_lmtp_ctx_t *ctx, ngx_p3x_lmtp_cmd_t *cmd)
{
    ngx_p3x_lmtp_reply(ctx, "250 2.0.0 OK");
}


static void
ngx_p3x_lmtp_quit(ngx_p3x_lmtp_ctx_t *ctx, ngx_p3x_lmtp_cmd_t *cmd)
{
    ngx_mail_core_srv_conf_t  *cscf;

    cscf = ngx_mail_get_module_srv_conf(ctx->session, ngx_mail_core_module);

    ngx_p3x_lmtp_reply(ctx, "221 2.0.0 %V closing connection",
                       &cscf->server_name);
    ctx->quit = 1;
}


/*
 * RFC 5321, 3.5.3: a server that will not verify says 252, and does not
 * tell which users exist.
 */

static void
ngx_p3x_lmtp_vrfy(ngx_p3x_lmtp_ctx_t *ctx, ngx_p3x_lmtp_cmd_t *cmd)
{
    ngx_p3x_lmtp_reply(ctx, "252 2.5.2 cannot VRFY user, but will accept "
                       "message and attempt delivery");
}


static void
ngx_p3x_lmtp_stls(ngx_p3x_lmtp_ctx_t *ctx, ngx_p3x_lmtp_cmd_t *cmd)
{
    if (!ngx_p3x_ssl_starttls(ctx->session)) {
        ngx_p3x_lmtp_error(ctx, "502 5.5.1 STARTTLS not available");
        return;
    }

    if (cmd->arg.len) {
        ngx_p3x_lmtp_error(ctx, "501 5.5.4 STARTTLS takes no arguments");
        return;
    }

    if (ctx->state == ngx_p3x_lmtp_state_mail) {
        ngx_p3x_lmtp_error(ctx, "503 5.5.1 STARTTLS within a transaction");
        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "pop3_ext lmtp: STARTTLS");

    ngx_p3x_lmtp_reply(ctx, "220 2.0.0 ready to start TLS");
    ctx->starttls = 1;
}


/*
 * After "220" to STARTTLS has been sent: the plaintext the client
 * pipelined is dropped and the handshake starts (_ssl.c); the core then
 * calls ngx_p3x_lmtp_init_protocol().
 */

static void
ngx_p3x_lmtp_starttls(ngx_p3x_lmtp_ctx_t *ctx)
{
    ctx->starttls = 0;

    ngx_p3x_ssl_handshake(ctx->session, &ctx->in, 0, "STARTTLS");
}


/* a transaction's memory: MAIL starts one, RSET or its end frees it */

static ngx_int_t
ngx_p3x_lmtp_begin(ngx_p3x_lmtp_ctx_t *ctx)
{
    u_char  rnd[P3X_TOKEN_LEN / 2];

    ctx->pool = ngx_create_pool(4096, ctx->connection->log);
    if (ctx->pool == NULL) {
        return NGX_ERROR;
    }

    if (ngx_array_init(&ctx->rcpts, ctx->pool, 4,
                       sizeof(ngx_p3x_lmtp_rcpt_t))
        != NGX_OK
        || ngx_array_init(&ctx->mboxes, ctx->pool, 4,
                          sizeof(ngx_p3x_lmtp_mbox_t))
           != NGX_OK)
    {
        ngx_destroy_pool(ctx->pool);
        ctx->pool = NULL;
        return NGX_ERROR;
    }

    /* names this transaction's staging keys */

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_destroy_pool(ctx->pool);
        ctx->pool = NULL;
        return NGX_ERROR;
    }

    ngx_hex_dump(ctx->token, rnd, sizeof(rnd));

    return NGX_OK;
}


/*
 * The transaction ends (delivered, RSET, LHLO, or the session closes):
 * staged bodies that were not stored are deleted (they would expire
 * anyway), and its memory goes.
 *
 * Between BDAT chunks the session takes commands while the chunks' STAGEs
 * are still on their way, and their handlers point into the
 * transaction's pool: they are cancelled before it goes (a reply that
 * still comes is read and dropped by the Redis client).  The DELs of
 * ngx_p3x_lmtp_discard() follow them on the same connection.
 */

static void
ngx_p3x_lmtp_end(ngx_p3x_lmtp_ctx_t *ctx)
{
    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "pop3_ext lmtp: transaction end, %ui recipients, "
                   "%ui pending", ctx->rcpts.nelts, ctx->pending);

    ngx_p3x_redis_cancel(&ctx->requests, NGX_P3X_TAG_ANY);
    ctx->pending = 0;

    ngx_p3x_lmtp_discard(ctx);

    if (ctx->chunk) {
        ngx_free(ctx->chunk);
        ctx->chunk = NULL;
    }

    if (ctx->sha) {
        EVP_MD_CTX_free(ctx->sha);
        ctx->sha = NULL;
    }

    if (ctx->pool) {
        ngx_destroy_pool(ctx->pool);
        ctx->pool = NULL;
    }

    ngx_memzero(&ctx->rcpts, sizeof(ngx_array_t));
    ngx_memzero(&ctx->mboxes, sizeof(ngx_array_t));
    ngx_memzero(&ctx->lookup, sizeof(ngx_p3x_lmtp_lookup_t));
    ngx_str_null(&ctx->from);

    ctx->declared = 0;
    ctx->chunk_len = 0;
    ctx->staged = 0;
    ctx->body_len = 0;
    ctx->header_len = 0;
    ctx->body_code = NULL;
    ctx->body_text = NULL;
    ctx->bdat_used = 0;
    ctx->digested = 0;

    if (ctx->state == ngx_p3x_lmtp_state_mail
        || ctx->state == ngx_p3x_lmtp_state_data
        || ctx->state == ngx_p3x_lmtp_state_bdat)
    {
        ctx->state = ngx_p3x_lmtp_state_ready;
    }
}


static void
ngx_p3x_lmtp_close(ngx_p3x_lmtp_ctx_t *ctx)
{
    ngx_connection_t  *c;

    c = ctx->connection;

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "pop3_ext lmtp: session close");

    ngx_p3x_lmtp_cleanup(ctx);

    ngx_mail_close_connection(c);
}


/*
 * Cancels all that could still call the session back and gives back
 * what it holds; runs twice at most (from close and the pool cleanup),
 * the second time idle.
 */

static void
ngx_p3x_lmtp_cleanup(void *data)
{
    ngx_p3x_lmtp_ctx_t  *ctx = data;

    if (ctx->state == ngx_p3x_lmtp_state_closing) {
        return;
    }

    if (ctx->wake.posted) {
        ngx_delete_posted_event(&ctx->wake);
    }

    ngx_p3x_redis_cancel(&ctx->requests, NGX_P3X_TAG_ANY);
    ctx->pending = 0;

    ngx_p3x_lmtp_end(ctx);

    ctx->state = ngx_p3x_lmtp_state_closing;

    ngx_p3x_io_free(&ctx->out, 0);
    ngx_p3x_io_free(&ctx->in, 0);
}
