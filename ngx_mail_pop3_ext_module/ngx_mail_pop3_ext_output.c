
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * The reply writer.  nginx's ngx_mail_send() writes one string; POP3
 * needs multi-line replies of any size, so a session has one output buffer
 * of a fixed size: replies are appended, pipelined replies coalesce into
 * one send(), and a long reply is produced only as fast as the client
 * takes it (the session resumes when the buffer has drained).  The buffer
 * exists only while there is something to send.  This file calls nothing
 * of the session's: the session calls it.  The sending and the line
 * formatting are _io.c's, shared with LMTP.
 */


#include "ngx_mail_pop3_ext_module.h"


static size_t ngx_p3x_out_body_all(ngx_p3x_ctx_t *ctx, u_char *p,
    size_t len);


/*
 * Short replies and listings need little room.  A body needs room for
 * two chunks, each a third larger when dot-stuffed: one goes out while
 * the next comes from Redis.  The buffer is changed only while empty.
 */

size_t
ngx_p3x_out_chunk_room(ngx_p3x_ctx_t *ctx)
{
    return ctx->conf->chunk_size + ctx->conf->chunk_size / 3 + 128;
}


size_t
ngx_p3x_out_body_size(ngx_p3x_ctx_t *ctx)
{
    return 2 * ngx_p3x_out_chunk_room(ctx);
}


ngx_int_t
ngx_p3x_out_alloc(ngx_p3x_ctx_t *ctx, size_t size)
{
    ngx_buf_t  *b;

    b = &ctx->out_buf;

    if (ctx->out) {
        if ((size_t) (b->end - b->start) >= size || b->last > b->pos) {
            return NGX_OK;
        }

        ngx_p3x_io_free(b, 0);
        ctx->out = NULL;
    }

    if (ngx_p3x_io_alloc(b, size, ctx->connection->log) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->out = b;

    return NGX_OK;
}


/* an idle session keeps no output buffer */

void
ngx_p3x_out_free(ngx_p3x_ctx_t *ctx)
{
    if (ctx->out && ctx->out->pos == ctx->out->last) {
        ngx_p3x_io_free(ctx->out, 0);
        ctx->out = NULL;
    }
}


size_t
ngx_p3x_out_room(ngx_p3x_ctx_t *ctx)
{
    return ctx->out->end - ctx->out->last;
}


void
ngx_p3x_out_str(ngx_p3x_ctx_t *ctx, u_char *data, size_t len)
{
    len = ngx_min(len, ngx_p3x_out_room(ctx));
    ctx->out->last = ngx_cpymem(ctx->out->last, data, len);
}


/*
 * Copies message octets, doubling a "." at a line start (RFC 1939, 3)
 * and writing a bare LF (a body stored against the model's rules) as
 * CRLF, so that every line the client gets is a protocol line.  For TOP,
 * stops after the header and ctx->top_lines body lines.  Returns how many
 * input octets were taken: it stops early when the buffer is full (the
 * caller keeps the rest) or TOP is done.
 */

size_t
ngx_p3x_out_body(ngx_p3x_ctx_t *ctx, u_char *p, size_t len)
{
    size_t   n;
    u_char   c, *dst, *end, *src, *last;

    if (ctx->top_lines < 0) {
        n = ngx_p3x_out_body_all(ctx, p, len);
        ngx_p3x_metrics_body(ctx, n);
        return n;
    }

    /* TOP: octet by octet, it counts lines and finds the header's end */

    dst = ctx->out->last;
    end = ctx->out->end;
    src = p;
    last = p + len;

    /* an octet writes at most three: a stuffed dot, CR and LF */

    while (src < last && end - dst >= 3) {

        if (ctx->top_lines == 0 && !ctx->body_in_header) {
            break;
        }

        if (ctx->body_bol) {
            ctx->body_bol = 0;

            if (*src == '.') {
                *dst++ = '.';
            }

            if (ctx->body_in_header && (*src == CR || *src == LF)) {
                /* the empty line that ends the header: not a body line */
                ctx->body_blank = 1;
            }
        }

        c = *src++;

        if (c != LF) {
            *dst++ = c;
            ctx->body_cr = (c == CR);
            continue;
        }

        if (!ctx->body_cr) {
            *dst++ = CR;
            ctx->body_bare_lf = 1;
        }

        *dst++ = LF;
        ctx->body_cr = 0;
        ctx->body_bol = 1;

        if (ctx->body_blank) {
            ctx->body_blank = 0;
            ctx->body_in_header = 0;

        } else if (ctx->top_lines > 0 && !ctx->body_in_header) {
            ctx->top_lines--;
        }
    }

    ctx->out->last = dst;

    ngx_p3x_metrics_body(ctx, src - p);

    return src - p;
}


/*
 * RETR: whole lines at a time.  memchr() finds the line ends and
 * memcpy() moves the lines; only a "." after a line end, or a bare LF,
 * costs more.  A line that does not fit is copied in part.
 */

static size_t
ngx_p3x_out_body_all(ngx_p3x_ctx_t *ctx, u_char *p, size_t len)
{
    u_char      *dst, *end, *src, *last, *lf;
    size_t       n, room;
    ngx_uint_t   bol, cr, bare;

    dst = ctx->out->last;
    end = ctx->out->end;
    src = p;
    last = p + len;
    bol = ctx->body_bol;
    cr = ctx->body_cr;

    while (src < last) {

        if (bol) {
            if (*src == '.') {
                if (end - dst < 2) {
                    break;
                }

                *dst++ = '.';
            }

            bol = 0;
        }

        room = end - dst;
        lf = memchr(src, LF, last - src);

        if (lf == NULL) {
            /* the rest is part of a line */
            n = ngx_min((size_t) (last - src), room);

            if (n == 0) {
                break;
            }

            dst = ngx_cpymem(dst, src, n);
            src += n;
            cr = (dst[-1] == CR);
            continue;
        }

        n = lf - src;
        bare = n ? (lf[-1] != CR) : !cr;

        if (room < n + 1 + bare) {

            /* the line does not fit: what does, short of its end */

            n = ngx_min(n, room);

            if (n == 0) {
                break;
            }

            dst = ngx_cpymem(dst, src, n);
            src += n;
            cr = (dst[-1] == CR);
            break;
        }

        dst = ngx_cpymem(dst, src, n);

        if (bare) {
            *dst++ = CR;
            ctx->body_bare_lf = 1;
        }

        *dst++ = LF;
        src = lf + 1;
        bol = 1;
        cr = 0;
    }

    ctx->out->last = dst;
    ctx->body_bol = bol;
    ctx->body_cr = cr;

    return src - p;
}


ngx_int_t
ngx_p3x_out_flush(ngx_p3x_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_connection_t          *c;
    ngx_mail_core_srv_conf_t  *cscf;

    if (ctx->out == NULL) {
        return NGX_OK;
    }

    c = ctx->connection;
    cscf = ngx_mail_get_module_srv_conf(ctx->session, ngx_mail_core_module);

    rc = ngx_p3x_io_flush(c, ctx->out, cscf->timeout);

    if (rc == NGX_ERROR && c->error && ctx->end_reason == NULL) {
        /* the client reset the connection, or went away */
        ctx->end_reason = "connection closed";
    }

    return rc;
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
        ctx->end_reason = "too many errors";
        ctx->quit = 1;
    }
}


/* for commands that take no argument: true after the error reply */

ngx_int_t
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


/* one reply line; the room for it is checked before each command */

void
ngx_p3x_reply(ngx_p3x_ctx_t *ctx, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    (void) ngx_p3x_io_vline(ctx->out, NGX_P3X_REPLY_ROOM, fmt, args);
    va_end(args);
}
