
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * A POP3 session's life (RFC 1939): its events, the command loop, the
 * command table, and closing.  The commands live in _login.c
 * (AUTHORIZATION) and _transaction.c (TRANSACTION, UPDATE).
 *
 * One loop, ngx_p3x_resume(), drives a session: it continues a multi-line
 * reply, executes buffered commands in order (pipelining), flushes the
 * replies, and reads more.  A command that needs Redis or the thread pool
 * sets ctx->busy and returns.  Nothing in the loop blocks.
 *
 * Completions.  Redis replies, thread-pool results and timers complete
 * the work of a session from the event loop.  A completion may update the
 * session's fields, append a reply to the output buffer (which exists
 * while the session is busy), send further requests and clear ctx->busy.
 * It never runs the loop, sends to the client or closes the session
 * itself: it calls ngx_p3x_wake(), which posts ctx->wake, and the posted
 * handler runs the loop when nothing of the session is on the stack.  A
 * completion that finds the session beyond repair sets ctx->fatal; the
 * loop closes it.  Only the client's events, the posted wake and the
 * loop close a session, and closing cancels everything that could still
 * complete: the session's Redis requests (ctx->requests), its thread
 * task, its timers and the posted wake.
 */


#include "ngx_mail_pop3_ext_module.h"


typedef struct {
    ngx_p3x_command_pt        auth;         /* in AUTHORIZATION */
    ngx_p3x_command_pt        trans;        /* in TRANSACTION */
} ngx_p3x_command_t;


static void ngx_p3x_wake_handler(ngx_event_t *ev);
static void ngx_p3x_read_handler(ngx_event_t *rev);
static void ngx_p3x_write_handler(ngx_event_t *wev);
static ngx_p3x_ctx_t *ngx_p3x_event_ctx(ngx_event_t *ev);
static void ngx_p3x_resume(ngx_p3x_ctx_t *ctx);
static ngx_int_t ngx_p3x_read(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_in_free(ngx_p3x_ctx_t *ctx);
static ngx_int_t ngx_p3x_next_command(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_dispatch(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
static void ngx_p3x_starttls(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_lock_lost(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_close(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_cleanup(void *data);
static void ngx_p3x_log_end(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_login_timeout(ngx_event_t *ev);
static void ngx_p3x_quit(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);
static void ngx_p3x_utf8(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd);


static ngx_p3x_command_t  ngx_p3x_commands[NGX_P3X_CMDS] = {
    [ngx_p3x_cmd_user] = { ngx_p3x_user, NULL },
    [ngx_p3x_cmd_pass] = { ngx_p3x_pass, NULL },
    [ngx_p3x_cmd_apop] = { ngx_p3x_apop, NULL },
    [ngx_p3x_cmd_auth] = { ngx_p3x_auth, NULL },
    [ngx_p3x_cmd_stls] = { ngx_p3x_stls, NULL },
    [ngx_p3x_cmd_capa] = { ngx_p3x_capa, ngx_p3x_capa },
    [ngx_p3x_cmd_quit] = { ngx_p3x_quit, ngx_p3x_quit },
    [ngx_p3x_cmd_noop] = { NULL, ngx_p3x_noop },
    [ngx_p3x_cmd_stat] = { NULL, ngx_p3x_stat },
    [ngx_p3x_cmd_list] = { NULL, ngx_p3x_list },
    [ngx_p3x_cmd_retr] = { NULL, ngx_p3x_retr },
    [ngx_p3x_cmd_dele] = { NULL, ngx_p3x_dele },
    [ngx_p3x_cmd_rset] = { NULL, ngx_p3x_rset },
    [ngx_p3x_cmd_top] = { NULL, ngx_p3x_top },
    [ngx_p3x_cmd_uidl] = { NULL, ngx_p3x_uidl },
    [ngx_p3x_cmd_last] = { NULL, ngx_p3x_last },
    [ngx_p3x_cmd_utf8] = { ngx_p3x_utf8, NULL }
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

    ngx_queue_init(&ctx->requests);

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        ngx_mail_close_connection(c);
        return;
    }

    cln->handler = ngx_p3x_cleanup;
    cln->data = ctx;

    ngx_p3x_metrics_session_start(ctx);

    ctx->wake.handler = ngx_p3x_wake_handler;
    ctx->wake.data = ctx;
    ctx->wake.log = c->log;

    ctx->ev_login.handler = ngx_p3x_login_timeout;
    ctx->ev_login.data = ctx;
    ctx->ev_login.log = c->log;
    ctx->ev_login.cancelable = 1;

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

    /* the whole AUTHORIZATION state has a time limit, not just each read */

    if (conf->login_timeout) {
        ngx_add_timer(&ctx->ev_login, conf->login_timeout);
    }

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

    ngx_p3x_metrics_session_tls(ctx);

    ctx->state = ngx_p3x_state_auth;
    ctx->user_ok = 0;
    ctx->skipping = 0;
    ctx->starttls = 0;
    ctx->sasl = ngx_p3x_sasl_wait_none;

    if (ctx->in->start) {
        ctx->in->pos = ctx->in->start;
        ctx->in->last = ctx->in->start;
    }

    c->read->handler = ngx_p3x_read_handler;
    c->write->handler = ngx_p3x_write_handler;

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0, "pop3_ext: session start");

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
ngx_p3x_wake_handler(ngx_event_t *ev)
{
    ngx_p3x_ctx_t  *ctx = ev->data;

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "pop3_ext: wake");

    ngx_p3x_resume(ctx);
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


/* the client takes more of a reply: the loop goes on where it stopped */

static void
ngx_p3x_write_handler(ngx_event_t *wev)
{
    ngx_int_t       rc;
    ngx_p3x_ctx_t  *ctx;

    ctx = ngx_p3x_event_ctx(wev);

    if (ctx == NULL) {
        return;
    }

    rc = ngx_p3x_out_flush(ctx);

    if (rc == NGX_ERROR) {
        ngx_p3x_close(ctx);
        return;
    }

    if (rc == NGX_OK) {
        ngx_p3x_resume(ctx);
    }
}


/*
 * The session of a client event, or NULL when the event was a timeout
 * and the session is closed (RFC 1939: an autologout does not enter the
 * UPDATE state).
 */

static ngx_p3x_ctx_t *
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
        ctx->end_reason = "client timed out";
        ngx_p3x_close(ctx);
        return NULL;
    }

    return ctx;
}


static void
ngx_p3x_resume(ngx_p3x_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_msec_t                 timeout;
    ngx_connection_t          *c;
    ngx_mail_core_srv_conf_t  *cscf;

    c = ctx->connection;

    for ( ;; ) {

        if (ctx->fatal) {
            ngx_p3x_close(ctx);
            return;
        }

        if (ctx->expired && ctx->state == ngx_p3x_state_auth) {
            ctx->expired = 0;
            ngx_p3x_login_expired(ctx);
        }

        if (ctx->busy) {
            return;
        }

        if (ngx_p3x_out_alloc(ctx, NGX_P3X_OUT_SMALL) != NGX_OK) {
            ctx->end_reason = "out of memory";
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

        /*
         * The lock is gone (a renewal or a command found it taken, or
         * pop3ext kick took it): the session ends now, idle or not,
         * before any further command, pipelined ones included.
         */

        if (ctx->lock_lost && ctx->state == ngx_p3x_state_trans) {
            ngx_p3x_lock_lost(ctx);
            continue;
        }

        if (ctx->starttls) {
            rc = ngx_p3x_out_flush(ctx);

            if (rc == NGX_ERROR) {
                ngx_p3x_close(ctx);

            } else if (rc == NGX_OK) {
                ngx_p3x_starttls(ctx);
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

        if (ngx_p3x_io_wait(c->read, timeout) != NGX_OK) {
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
    size_t      size;
    ngx_int_t   rc;

    size = ngx_max(ctx->conf->line_max, ctx->conf->sasl_line_max);

    if (ngx_p3x_io_alloc(ctx->in, size, ctx->connection->log) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_p3x_io_recv(ctx->connection, ctx->in);

    if (rc == NGX_ERROR) {
        ctx->end_reason = "connection closed";
    }

    return rc;
}


static void
ngx_p3x_in_free(ngx_p3x_ctx_t *ctx)
{
    if (ctx->in->pos == ctx->in->last && !ctx->skipping) {
        /* what was read into it may have been a password */
        ngx_p3x_io_free(ctx->in, 1);
    }
}


/*
 * Executes one buffered command.  NGX_AGAIN: no whole line is buffered;
 * NGX_OK: a command ran (it may have made the session busy).
 */

static ngx_int_t
ngx_p3x_next_command(ngx_p3x_ctx_t *ctx)
{
    u_char         *next;
    ngx_int_t       rc;
    ngx_str_t       line;
    ngx_buf_t      *b;
    ngx_p3x_cmd_t   cmd;

    b = ctx->in;

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

    /*
     * After a DELE or RSET whose outcome is unknown the session reads the
     * marks from Redis before it takes the next command (which stays in
     * the buffer meanwhile), so that its view and Redis's agree.
     */

    if (ctx->state == ngx_p3x_state_trans
        && ctx->sasl == ngx_p3x_sasl_wait_none)
    {
        if (ctx->marks == ngx_p3x_marks_unknown) {
            if (ngx_p3x_marks_read(ctx) == NGX_OK) {
                return NGX_OK;
            }

            ctx->marks = ngx_p3x_marks_failed;
        }

        if (ctx->marks == ngx_p3x_marks_failed) {

            /* Redis cannot tell now: this command gets the error */

            ctx->marks = ngx_p3x_marks_unknown;
            b->pos = next;
            ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] mail store "
                                     "unavailable" CRLF);
            return NGX_OK;
        }
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
        ctx->end_reason = "too many commands";
        ctx->quit = 1;
        return NGX_OK;
    }

    switch (rc) {

    case NGX_OK:
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                       "pop3_ext: command \"%V\", %ui argument(s)",
                       &cmd.name, cmd.nargs);
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

    ngx_p3x_metrics_command(ctx, cmd);

    if (ctx->state == ngx_p3x_state_trans && ctx->lock_lost) {
        ngx_p3x_lock_lost(ctx);
        return;
    }

    if (cmd->command == ngx_p3x_cmd_unknown || cmd->command >= NGX_P3X_CMDS) {
        ngx_p3x_error(ctx, "-ERR unknown command");
        return;
    }

    switch (ctx->state) {

    case ngx_p3x_state_auth:
        handler = ngx_p3x_commands[cmd->command].auth;
        break;

    case ngx_p3x_state_trans:
        handler = ngx_p3x_commands[cmd->command].trans;
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


/*
 * The session can no longer change the maildrop, and another may hold
 * it: it says so and closes, without the UPDATE state.  Marks it made are
 * gone with the lock (KICK, RELEASE and the next LOCK drop them).
 */

static void
ngx_p3x_lock_lost(ngx_p3x_ctx_t *ctx)
{
    ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                  "pop3_ext: the lock of maildrop \"%V\" was lost",
                  &ctx->mailbox);

    ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] maildrop lock lost, "
                             "nothing deleted" CRLF);
    ctx->end_reason = "lock lost";
    ctx->locked = 0;
    ctx->quit = 1;
}


/*
 * After "+OK" to STLS has been sent: the plaintext the client pipelined
 * is dropped and the handshake starts (_ssl.c); the core then calls
 * ngx_p3x_init_protocol(), which starts the session over.
 */

static void
ngx_p3x_starttls(ngx_p3x_ctx_t *ctx)
{
    ctx->starttls = 0;

    ngx_p3x_out_free(ctx);
    ngx_p3x_metrics_stls(ctx);

    /* what was read may have been a password: wiped */
    ngx_p3x_ssl_handshake(ctx->session, ctx->in, 1, "STLS");
}


static void
ngx_p3x_close(ngx_p3x_ctx_t *ctx)
{
    ngx_connection_t  *c;

    c = ctx->connection;

    if (ctx->state == ngx_p3x_state_trans
        || ctx->state == ngx_p3x_state_update)
    {
        ngx_p3x_log_end(ctx);
    }

    ngx_p3x_session_end(ctx);

    ctx->state = ngx_p3x_state_closing;

    /*
     * Now, not at the pool's end: a TLS shutdown may keep the pool alive
     * a while, and no Redis reply, hash result or timer may reach the
     * session meanwhile.  The pool cleanup runs it again, harmlessly.
     */

    ngx_p3x_cleanup(ctx);

    ngx_mail_close_connection(c);
}


/*
 * Gives back all a session holds and cancels all that could still call
 * it back; runs twice at most, the second time idle.  It visits only the
 * session's own requests.
 */

static void
ngx_p3x_cleanup(void *data)
{
    ngx_p3x_ctx_t  *ctx = data;

    /* once; here when nginx's core closed the connection (STLS failed) */
    ngx_p3x_session_end(ctx);

    ctx->state = ngx_p3x_state_closing;

    if (ctx->wake.posted) {
        ngx_delete_posted_event(&ctx->wake);
    }

    if (ctx->refresh.timer_set) {
        ngx_del_timer(&ctx->refresh);
    }

    if (ctx->ev_delay.timer_set) {
        ngx_del_timer(&ctx->ev_delay);
    }

    if (ctx->ev_login.timer_set) {
        ngx_del_timer(&ctx->ev_login);
    }

    ngx_p3x_auth_cancel(ctx);
    ngx_p3x_redis_cancel(&ctx->requests, NGX_P3X_TAG_ANY);

    if (ctx->locked || ctx->locking) {
        ctx->locked = 0;
        ctx->locking = 0;
        ngx_p3x_store_release(ctx);
    }

    ngx_p3x_limit_conn_release(ctx, 0);

    ngx_p3x_login_forget_password(ctx);

    ngx_p3x_io_free(&ctx->out_buf, 0);
    ctx->out = NULL;

    if (ctx->body_spill) {
        ngx_free(ctx->body_spill);
        ctx->body_spill = NULL;
    }

    ngx_p3x_io_free(ctx->in, 1);
}


/*
 * What the session did.  "dele" counts what the commit removed, as Redis
 * counted it; without a commit, nothing, and the reason.
 */

static void
ngx_p3x_log_end(ngx_p3x_ctx_t *ctx)
{
    ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                  "pop3_ext: session end, user=\"%V\" mailbox=\"%V\" "
                  "retr=%ui/%O dele=%ui/%O left=%ui%s%s%s",
                  &ctx->user, &ctx->mailbox,
                  ctx->retrieved, ctx->retrieved_octets,
                  ctx->committed ? ctx->removed : 0,
                  ctx->committed ? ctx->removed_octets : 0,
                  ctx->nmsgs - (ctx->committed ? ctx->removed : 0),
                  ctx->state == ngx_p3x_state_update ? "" : " (no QUIT)",
                  ctx->end_reason && !ctx->committed ? ", " : "",
                  ctx->end_reason && !ctx->committed ? ctx->end_reason : "");
}


/* RFC 1939 gives a session no time limit before login: we do */

static void
ngx_p3x_login_timeout(ngx_event_t *ev)
{
    ngx_p3x_ctx_t  *ctx = ev->data;

    if (ctx->state != ngx_p3x_state_auth) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                  "pop3_ext: no login within %M ms",
                  ctx->conf->login_timeout);

    if (ctx->connection->read->handler != ngx_p3x_read_handler) {
        /* a TLS handshake is going on: nothing to say, just close */
        ctx->end_reason = "login timed out";
        ctx->fatal = 1;
        ngx_p3x_wake(ctx);
        return;
    }

    ctx->expired = 1;
    ngx_p3x_wake(ctx);
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
                             "AUTH-RESP-CODE" CRLF);

    /* EXPIRE, LOGIN-DELAY: by the state and the user (_retention.c) */
    ngx_p3x_retention_capa(ctx);

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

        if (ngx_p3x_ssl_starttls(ctx->session)) {
            ngx_p3x_out_literal(ctx, "STLS" CRLF);
        }

        ngx_p3x_out_literal(ctx, "UTF8 USER" CRLF);
    }

    ngx_p3x_out_literal(ctx, "IMPLEMENTATION ngx_mail_pop3_ext_module/"
                             NGX_P3X_VERSION CRLF
                             "." CRLF);
}


/* QUIT: in TRANSACTION it enters UPDATE (_transaction.c) */

static void
ngx_p3x_quit(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    ctx->quit = 1;
    ctx->end_reason = "quit";

    if (ctx->state != ngx_p3x_state_trans) {
        ngx_p3x_out_literal(ctx, "+OK bye" CRLF);
        return;
    }

    ngx_p3x_update(ctx);
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
