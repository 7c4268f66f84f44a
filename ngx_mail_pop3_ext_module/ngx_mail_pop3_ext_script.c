
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * The data model's server-side scripts (ngx_mail_pop3_ext_model.h), by
 * name, with the SHA1 that EVALSHA sends.  The Redis client loads them on
 * every new connection and again after NOSCRIPT.
 */


#include "ngx_mail_pop3_ext_module.h"

#include <ngx_sha1.h>


#define ngx_p3x_script(name, source)                                          \
    { ngx_string(name), ngx_string(source), "" }


ngx_p3x_script_t  ngx_p3x_scripts[NGX_P3X_SCRIPTS + 1] = {
    [NGX_P3X_SCRIPT_LOCK] = ngx_p3x_script("lock", P3X_SCRIPT_LOCK),
    [NGX_P3X_SCRIPT_REFRESH] = ngx_p3x_script("refresh",
                                              P3X_SCRIPT_REFRESH),
    [NGX_P3X_SCRIPT_MARK] = ngx_p3x_script("mark", P3X_SCRIPT_MARK),
    [NGX_P3X_SCRIPT_MARKS] = ngx_p3x_script("marks", P3X_SCRIPT_MARKS),
    [NGX_P3X_SCRIPT_COMMIT] = ngx_p3x_script("commit", P3X_SCRIPT_COMMIT),
    [NGX_P3X_SCRIPT_RELEASE] = ngx_p3x_script("release",
                                              P3X_SCRIPT_RELEASE),
    [NGX_P3X_SCRIPT_AUTHINFO] = ngx_p3x_script("authinfo",
                                               P3X_SCRIPT_AUTHINFO),
    [NGX_P3X_SCRIPT_FAIL] = ngx_p3x_script("fail", P3X_SCRIPT_FAIL),
    [NGX_P3X_SCRIPT_REFUND] = ngx_p3x_script("refund", P3X_SCRIPT_REFUND),
    [NGX_P3X_SCRIPT_CONN] = ngx_p3x_script("conn", P3X_SCRIPT_CONN),
    [NGX_P3X_SCRIPT_STAGE] = ngx_p3x_script("stage", P3X_SCRIPT_STAGE),
    [NGX_P3X_SCRIPT_STORE] = ngx_p3x_script("store", P3X_SCRIPT_STORE),
    [NGX_P3X_SCRIPTS] = { ngx_null_string, ngx_null_string, "" }
};


ngx_int_t
ngx_p3x_scripts_init(void)
{
    u_char             hash[20];
    ngx_sha1_t         sha1;
    ngx_p3x_script_t  *s;

    for (s = ngx_p3x_scripts; s->name.len; s++) {
        ngx_sha1_init(&sha1);
        ngx_sha1_update(&sha1, s->source.data, s->source.len);
        ngx_sha1_final(hash, &sha1);

        ngx_hex_dump(s->sha1, hash, 20);
    }

    return NGX_OK;
}
