
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * libFuzzer target: SASL response decoding (base64, "*", "=") and the
 * PLAIN and CRAM-MD5 message parsers on what it yields.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_mail_pop3_ext_sasl.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char     *line, *buf;
    ngx_str_t   in, msg, a, b, c;

    line = malloc(size ? size : 1);
    buf = malloc(ngx_p3x_base64_decoded_len(size) + 1);

    if (line == NULL || buf == NULL) {
        free(line);
        free(buf);
        return 0;
    }

    memcpy(line, data, size);

    in.data = line;
    in.len = size;

    if (ngx_p3x_sasl_response(&in, buf, &msg) == NGX_OK) {

        if (msg.len > ngx_p3x_base64_decoded_len(size)) {
            abort();
        }

        if (ngx_p3x_sasl_plain(&msg, &a, &b, &c) == NGX_OK
            && a.len + b.len + c.len + 2 != msg.len)
        {
            abort();
        }

        if (ngx_p3x_sasl_cram_md5(&msg, &a, &b) == NGX_OK
            && (b.len != 32 || a.len + 33 != msg.len))
        {
            abort();
        }
    }

    /* the raw line as a decoded message too */
    (void) ngx_p3x_sasl_plain(&in, &a, &b, &c);
    (void) ngx_p3x_sasl_cram_md5(&in, &a, &b);

    free(line);
    free(buf);

    return 0;
}
