
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * TLS glue.  nginx's mail core does the handshakes, for "listen ... ssl"
 * and for STLS (ngx_mail_starttls_handler()); this file decides what a
 * channel may carry, hands a connection over to the handshake, and reads
 * client certificates.  Its STARTTLS part serves LMTP's STARTTLS too.
 */


#include "ngx_mail_pop3_ext_module.h"


ngx_int_t
ngx_p3x_ssl_on(ngx_p3x_ctx_t *ctx)
{
#if (NGX_MAIL_SSL)
    return ctx->connection->ssl != NULL;
#else
    return 0;
#endif
}


/*
 * Plaintext credentials may cross a channel that is TLS, or that comes
 * from pop3_ext_secure_networks (loopback by default, as Dovecot does).
 */

ngx_int_t
ngx_p3x_ssl_secure(ngx_p3x_ctx_t *ctx)
{
    ngx_connection_t  *c;

    c = ctx->connection;

    if (ngx_p3x_ssl_on(ctx)) {
        return 1;
    }

    if (ctx->conf->secure_networks
        && ngx_cidr_match(c->sockaddr, ctx->conf->secure_networks) == NGX_OK)
    {
        return 1;
    }

    return 0;
}


/*
 * May the client say STLS (STARTTLS in LMTP) now?  This and the next
 * two take the mail session, not a POP3 one: the LMTP session asks them
 * too.
 */

ngx_int_t
ngx_p3x_ssl_starttls(ngx_mail_session_t *s)
{
#if (NGX_MAIL_SSL)

    ngx_mail_ssl_conf_t  *sslcf;

    if (s->connection->ssl) {
        return 0;
    }

    sslcf = ngx_mail_get_module_srv_conf(s, ngx_mail_ssl_module);

    return sslcf->starttls != NGX_MAIL_STARTTLS_OFF;

#else

    return 0;

#endif
}


/* "starttls only": nothing about credentials, or mail, before TLS */

ngx_int_t
ngx_p3x_ssl_starttls_only(ngx_mail_session_t *s)
{
#if (NGX_MAIL_SSL)
    return ngx_mail_starttls_only(s, s->connection);
#else
    return 0;
#endif
}


/*
 * Once the go-ahead to STLS or STARTTLS is out: whatever the client
 * pipelined in plaintext is dropped, never read as a command inside TLS
 * (the CVE-2011-0411 class of injection), the input buffer goes (wiped,
 * if it may have held a password), and nginx's mail core does the
 * handshake; it then calls the protocol's init_protocol, which starts the
 * session over.  The caller's part of the session is done before: the
 * handshake may end, and init_protocol run, before this returns.
 */

void
ngx_p3x_ssl_handshake(ngx_mail_session_t *s, ngx_buf_t *in, ngx_uint_t wipe,
    const char *command)
{
    ngx_connection_t  *c;

    c = s->connection;

    if (in->last > in->pos) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client pipelined %uz octets after %s, dropped",
                      (size_t) (in->last - in->pos), command);
    }

    ngx_p3x_io_free(in, wipe);

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

#if (NGX_MAIL_SSL)
    c->read->handler = ngx_mail_starttls_handler;
    ngx_mail_starttls_handler(c->read);
#endif
}


/*
 * The identity of a verified client certificate: its subject's common
 * name, the name AUTH EXTERNAL logs in as.
 */

ngx_int_t
ngx_p3x_ssl_identity(ngx_p3x_ctx_t *ctx, ngx_str_t *id)
{
#if (NGX_MAIL_SSL)

    int                 n;
    X509               *cert;
    X509_NAME          *name;
    ngx_connection_t   *c;
    ASN1_STRING        *str;
    X509_NAME_ENTRY    *entry;

    c = ctx->connection;

    if (c->ssl == NULL
        || SSL_get_verify_result(c->ssl->connection) != X509_V_OK)
    {
        return NGX_DECLINED;
    }

    cert = SSL_get_peer_certificate(c->ssl->connection);
    if (cert == NULL) {
        return NGX_DECLINED;
    }

    name = X509_get_subject_name(cert);
    n = X509_NAME_get_index_by_NID(name, NID_commonName, -1);

    if (n < 0) {
        X509_free(cert);
        return NGX_DECLINED;
    }

    entry = X509_NAME_get_entry(name, n);
    str = X509_NAME_ENTRY_get_data(entry);

    id->len = ASN1_STRING_length(str);
    id->data = ngx_pnalloc(c->pool, id->len);

    if (id->data == NULL) {
        X509_free(cert);
        return NGX_ERROR;
    }

    ngx_memcpy(id->data, ASN1_STRING_get0_data(str), id->len);

    X509_free(cert);

    return NGX_OK;

#else

    return NGX_DECLINED;

#endif
}
