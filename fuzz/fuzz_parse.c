
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * libFuzzer target: the command parser over arbitrary client input, as
 * the session feeds it (one buffer, many lines).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_mail_pop3_ext_parse.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char         *buf, *p, *end, *next;
    ngx_int_t       rc;
    ngx_uint_t      i;
    ngx_p3x_cmd_t   cmd;

    /* a copy of exactly the input: reads past it are caught */
    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 0;
    }

    memcpy(buf, data, size);

    p = buf;
    end = buf + size;

    while (p < end) {
        rc = ngx_p3x_parse_command(p, end, &cmd, &next);

        if (rc == NGX_AGAIN) {
            break;
        }

        if (next <= p || next > end) {
            abort();
        }

        if (rc == NGX_OK) {
            for (i = 0; i < cmd.nargs; i++) {
                if (cmd.args[i].data < p
                    || cmd.args[i].data + cmd.args[i].len > next)
                {
                    abort();
                }

                (void) ngx_p3x_parse_number(&cmd.args[i]);
            }
        }

        p = next;
    }

    free(buf);

    return 0;
}
