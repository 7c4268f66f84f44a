
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * TLS glue.  nginx's mail core does the handshakes, for "listen ... ssl"
 * and for STLS (ngx_mail_starttls_handler()); this file decides what a
 * channel may carry and reads client certificates.
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


/* may the client say STLS now? */

ngx_int_t
ngx_p3x_ssl_starttls(ngx_p3x_ctx_t *ctx)
{
#if (NGX_MAIL_SSL)

    ngx_mail_ssl_conf_t  *sslcf;

    if (ctx->connection->ssl) {
        return 0;
    }

    sslcf = ngx_mail_get_module_srv_conf(ctx->session, ngx_mail_ssl_module);

    return sslcf->starttls != NGX_MAIL_STARTTLS_OFF;

#else

    return 0;

#endif
}


/* "starttls only": nothing about credentials before TLS */

ngx_int_t
ngx_p3x_ssl_starttls_only(ngx_p3x_ctx_t *ctx)
{
#if (NGX_MAIL_SSL)
    return ngx_mail_starttls_only(ctx->session, ctx->connection);
#else
    return 0;
#endif
}


/*
 * STLS, once "+OK" is out and the plaintext input dropped: nginx's mail
 * core does the handshake and then calls ngx_p3x_init_protocol().
 */

void
ngx_p3x_ssl_handshake(ngx_connection_t *c)
{
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
