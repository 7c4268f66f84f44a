
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * Buffered I/O on a client connection, the same for the POP3 and the LMTP
 * session: an input buffer that exists only while it holds something, an
 * output buffer sent with write-event flow control, reply lines formatted
 * into it.  The functions take buffers and connections, never a session:
 * both protocols call them, and they call nothing of either.
 */


#ifndef _NGX_MAIL_POP3_EXT_IO_H_INCLUDED_
#define _NGX_MAIL_POP3_EXT_IO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>


ngx_int_t ngx_p3x_io_alloc(ngx_buf_t *b, size_t size, ngx_log_t *log);
void ngx_p3x_io_free(ngx_buf_t *b, ngx_uint_t wipe);
ngx_int_t ngx_p3x_io_recv(ngx_connection_t *c, ngx_buf_t *b);
ngx_int_t ngx_p3x_io_skip_line(ngx_buf_t *b);
ngx_int_t ngx_p3x_io_flush(ngx_connection_t *c, ngx_buf_t *b,
    ngx_msec_t timeout);
ngx_int_t ngx_p3x_io_wait(ngx_event_t *ev, ngx_msec_t timeout);
u_char *ngx_p3x_io_vline(ngx_buf_t *b, size_t max, const char *fmt,
    va_list args);


#endif /* _NGX_MAIL_POP3_EXT_IO_H_INCLUDED_ */
