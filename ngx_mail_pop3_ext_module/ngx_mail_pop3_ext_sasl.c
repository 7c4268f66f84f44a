
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_mail_pop3_ext_sasl.h"


static ngx_int_t ngx_p3x_base64_value(u_char c);


ngx_int_t
ngx_p3x_sasl_response(ngx_str_t *line, u_char *buf, ngx_str_t *out)
{
    size_t  len;

    if (line->len == 1 && line->data[0] == '*') {
        return NGX_DECLINED;
    }

    out->data = buf;
    out->len = 0;

    if (line->len == 1 && line->data[0] == '=') {
        return NGX_OK;
    }

    if (line->len == 0) {
        return NGX_ERROR;
    }

    if (ngx_p3x_base64_decode(buf, &len, line->data, line->len) != NGX_OK) {
        return NGX_ERROR;
    }

    out->len = len;

    return NGX_OK;
}


ngx_int_t
ngx_p3x_base64_decode(u_char *dst, size_t *dlen, u_char *src, size_t len)
{
    size_t     i, pad;
    u_char    *d;
    ngx_int_t  v[4];
    ngx_uint_t j;

    if (len % 4) {
        return NGX_ERROR;
    }

    pad = 0;

    if (len && src[len - 1] == '=') {
        pad++;

        if (src[len - 2] == '=') {
            pad++;
        }
    }

    d = dst;

    for (i = 0; i < len; i += 4) {

        for (j = 0; j < 4; j++) {

            if (src[i + j] == '=' && i + 4 == len && j >= 4 - pad) {
                v[j] = 0;
                continue;
            }

            v[j] = ngx_p3x_base64_value(src[i + j]);

            if (v[j] < 0) {
                return NGX_ERROR;
            }
        }

        *d++ = (u_char) (v[0] << 2 | v[1] >> 4);
        *d++ = (u_char) (v[1] << 4 | v[2] >> 2);
        *d++ = (u_char) (v[2] << 6 | v[3]);
    }

    *dlen = (d - dst) - pad;

    return NGX_OK;
}


static ngx_int_t
ngx_p3x_base64_value(u_char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == '+') {
        return 62;
    }

    if (c == '/') {
        return 63;
    }

    return -1;
}


ngx_int_t
ngx_p3x_sasl_plain(ngx_str_t *msg, ngx_str_t *authzid, ngx_str_t *authcid,
    ngx_str_t *passwd)
{
    u_char  *p, *last, *nul;

    p = msg->data;
    last = p + msg->len;

    nul = p;
    while (nul < last && *nul != '\0') {
        nul++;
    }

    if (nul == last) {
        return NGX_ERROR;
    }

    authzid->data = p;
    authzid->len = nul - p;

    p = nul + 1;

    nul = p;
    while (nul < last && *nul != '\0') {
        nul++;
    }

    if (nul == last) {
        return NGX_ERROR;
    }

    authcid->data = p;
    authcid->len = nul - p;

    passwd->data = nul + 1;
    passwd->len = last - (nul + 1);

    if (authcid->len == 0 || passwd->len == 0
        || !ngx_p3x_sasl_no_nul(passwd))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_p3x_sasl_cram_md5(ngx_str_t *msg, ngx_str_t *user, ngx_str_t *digest)
{
    u_char  *p, *sp, *last;

    p = msg->data;
    last = p + msg->len;

    /* the digest follows the last space: user names may hold none anyway */

    if (msg->len < 34) {
        return NGX_ERROR;
    }

    sp = last - 33;

    if (*sp != ' ') {
        return NGX_ERROR;
    }

    user->data = p;
    user->len = sp - p;

    digest->data = sp + 1;
    digest->len = 32;

    for (p = digest->data; p < last; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) {
            return NGX_ERROR;
        }
    }

    if (user->len == 0 || !ngx_p3x_sasl_no_nul(user)) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_p3x_sasl_no_nul(ngx_str_t *s)
{
    size_t  i;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] == '\0') {
            return 0;
        }
    }

    return 1;
}
