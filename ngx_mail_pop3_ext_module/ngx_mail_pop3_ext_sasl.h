
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * SASL message decoding (RFC 4616 PLAIN, the LOGIN mechanism, RFC 2195
 * CRAM-MD5 responses, RFC 4422 EXTERNAL): pure functions over byte
 * ranges, no allocation and no library calls, so that they can be fuzzed
 * on their own.
 */


#ifndef _NGX_MAIL_POP3_EXT_SASL_H_INCLUDED_
#define _NGX_MAIL_POP3_EXT_SASL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define ngx_p3x_base64_decoded_len(len)  (((len) + 3) / 4 * 3)


/*
 * A client response line (RFC 5034, 4): "*" cancels (NGX_DECLINED), "="
 * is an empty response, anything else is base64.  Decodes into buf, of
 * at least ngx_p3x_base64_decoded_len(line->len) octets.
 */
ngx_int_t ngx_p3x_sasl_response(ngx_str_t *line, u_char *buf,
    ngx_str_t *out);

/* strict base64: padding required, no white space */
ngx_int_t ngx_p3x_base64_decode(u_char *dst, size_t *dlen, u_char *src,
    size_t len);

/* "authzid NUL authcid NUL passwd" */
ngx_int_t ngx_p3x_sasl_plain(ngx_str_t *msg, ngx_str_t *authzid,
    ngx_str_t *authcid, ngx_str_t *passwd);

/* "user SP 32 lowercase hex digits" */
ngx_int_t ngx_p3x_sasl_cram_md5(ngx_str_t *msg, ngx_str_t *user,
    ngx_str_t *digest);

/* true if the octets hold no NUL: names and passwords must not */
ngx_int_t ngx_p3x_sasl_no_nul(ngx_str_t *s);


#endif /* _NGX_MAIL_POP3_EXT_SASL_H_INCLUDED_ */
