
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * Buffered I/O on a client connection, for the POP3 session (_session.c,
 * and its reply writer _output.c), the LMTP session (_lmtp.c) and the
 * STARTTLS hand-over of both (_ssl.c).  See ngx_mail_pop3_ext_io.h.
 *
 * The input buffer is allocated when a session reads and freed once
 * everything in it was taken, so that an idle session holds none; the
 * output buffer is each protocol's to keep (LMTP) or free when drained
 * (POP3, _output.c).  Whatever the session, a read deletes the idle
 * timer, a send that must wait sets the write timer, and a send that
 * completes deletes it.
 */


#include "ngx_mail_pop3_ext_io.h"


/* a buffer of size octets, unless it has memory already */

ngx_int_t
ngx_p3x_io_alloc(ngx_buf_t *b, size_t size, ngx_log_t *log)
{
    u_char  *p;

    if (b->start) {
        return NGX_OK;
    }

    p = ngx_alloc(size, log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    b->start = p;
    b->pos = p;
    b->last = p;
    b->end = p + size;

    return NGX_OK;
}


/*
 * Gives the memory back, whatever the buffer holds; "wipe" zeroes it
 * first, for a buffer that may have held a password.
 */

void
ngx_p3x_io_free(ngx_buf_t *b, ngx_uint_t wipe)
{
    if (b->start == NULL) {
        return;
    }

    if (wipe) {
        ngx_explicit_memzero(b->start, b->end - b->start);
    }

    ngx_free(b->start);
    ngx_memzero(b, sizeof(ngx_buf_t));
}


/*
 * Reads into an allocated buffer, after what it holds unread (moved to
 * its start, so that a read has all the room the rest leaves).  NGX_OK:
 * octets came; NGX_AGAIN: none yet; NGX_ERROR: the client closed the
 * connection, or it failed.
 */

ngx_int_t
ngx_p3x_io_recv(ngx_connection_t *c, ngx_buf_t *b)
{
    ssize_t  n;

    if (b->pos == b->last) {
        b->pos = b->start;
        b->last = b->start;

    } else if (b->pos > b->start) {
        b->last = ngx_movemem(b->start, b->pos, b->last - b->pos);
        b->pos = b->start;
    }

    if (b->last == b->end) {
        /* the callers take what a full buffer holds before reading */
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


/*
 * The rest of a line too long to take: what is buffered of it goes.
 * NGX_OK: past its end; NGX_AGAIN: the buffer is used up, and the line
 * goes on in what comes next.
 */

ngx_int_t
ngx_p3x_io_skip_line(ngx_buf_t *b)
{
    u_char  *lf;

    lf = ngx_strlchr(b->pos, b->last, LF);

    if (lf == NULL) {
        b->pos = b->last;
        return NGX_AGAIN;
    }

    b->pos = lf + 1;

    return NGX_OK;
}


/*
 * Sends what the buffer holds.  NGX_OK: all of it, and the buffer is
 * empty; NGX_AGAIN: the rest waits for the write event, within timeout;
 * NGX_ERROR: the connection failed, with c->error set when the send did
 * (the client went away).
 */

ngx_int_t
ngx_p3x_io_flush(ngx_connection_t *c, ngx_buf_t *b, ngx_msec_t timeout)
{
    ssize_t  n;

    while (b->pos < b->last) {
        n = c->send(c, b->pos, b->last - b->pos);

        if (n == NGX_ERROR) {
            c->error = 1;
            return NGX_ERROR;
        }

        if (n == NGX_AGAIN) {
            if (ngx_p3x_io_wait(c->write, timeout) != NGX_OK) {
                return NGX_ERROR;
            }

            return NGX_AGAIN;
        }

        b->pos += n;
    }

    b->pos = b->start;
    b->last = b->start;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    return NGX_OK;
}


/* waits for the event, read or write, at most timeout */

ngx_int_t
ngx_p3x_io_wait(ngx_event_t *ev, ngx_msec_t timeout)
{
    ngx_add_timer(ev, timeout);

    if (ev->write) {
        return ngx_handle_write_event(ev, 0);
    }

    return ngx_handle_read_event(ev, 0);
}


/*
 * Appends one reply line of at most max octets, CRLF included: a longer
 * one is cut there.  Returns where the line starts, or NULL when the
 * buffer has no room for a line (the callers check the room before a
 * command, so this does not happen).
 */

u_char *
ngx_p3x_io_vline(ngx_buf_t *b, size_t max, const char *fmt, va_list args)
{
    u_char  *p, *line;
    size_t   room;

    room = ngx_min((size_t) (b->end - b->last), max);

    if (room < 3) {
        return NULL;
    }

    line = b->last;

    p = ngx_vslprintf(line, line + room - 2, fmt, args);

    *p++ = CR;
    *p++ = LF;

    b->last = p;

    return line;
}
