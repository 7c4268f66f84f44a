
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_mail_pop3_ext_parse.h"


typedef struct {
    u_char          name[5];
    ngx_p3x_cmd_e   command;
} ngx_p3x_keyword_t;


static ngx_p3x_cmd_e ngx_p3x_lookup(u_char *p, size_t len);


/* all keywords are 3 or 4 letters; compared upper-cased */
static ngx_p3x_keyword_t  ngx_p3x_keywords[] = {
    { "USER", ngx_p3x_cmd_user },
    { "PASS", ngx_p3x_cmd_pass },
    { "APOP", ngx_p3x_cmd_apop },
    { "AUTH", ngx_p3x_cmd_auth },
    { "STLS", ngx_p3x_cmd_stls },
    { "CAPA", ngx_p3x_cmd_capa },
    { "QUIT", ngx_p3x_cmd_quit },
    { "NOOP", ngx_p3x_cmd_noop },
    { "STAT", ngx_p3x_cmd_stat },
    { "LIST", ngx_p3x_cmd_list },
    { "RETR", ngx_p3x_cmd_retr },
    { "DELE", ngx_p3x_cmd_dele },
    { "RSET", ngx_p3x_cmd_rset },
    { "TOP",  ngx_p3x_cmd_top },
    { "UIDL", ngx_p3x_cmd_uidl },
    { "LAST", ngx_p3x_cmd_last },
    { "UTF8", ngx_p3x_cmd_utf8 },
    { "",     ngx_p3x_cmd_unknown }
};


ngx_int_t
ngx_p3x_parse_command(u_char *start, u_char *end, ngx_p3x_cmd_t *cmd,
    u_char **next)
{
    u_char  *p, *lf, *last, *arg;

    lf = ngx_strlchr(start, end, LF);
    if (lf == NULL) {
        return NGX_AGAIN;
    }

    *next = lf + 1;

    last = lf;
    if (last > start && last[-1] == CR) {
        last--;
    }

    cmd->command = ngx_p3x_cmd_unknown;
    cmd->nargs = 0;
    cmd->name.data = start;
    cmd->name.len = 0;

    /*
     * Octets below 0x20 other than the line end have no place in a
     * command: a NUL or a bare CR is how a smuggled second command or a
     * truncated C string would look.
     */

    for (p = start; p < last; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return NGX_P3X_PARSE_INVALID;
        }
    }

    p = start;

    while (p < last && *p != ' ') {
        p++;
    }

    cmd->name.len = p - start;

    if (cmd->name.len == 0) {
        return NGX_P3X_PARSE_EMPTY;
    }

    cmd->command = ngx_p3x_lookup(start, cmd->name.len);

    if (cmd->command == ngx_p3x_cmd_pass) {

        /* the password is the rest of the line, spaces included */

        if (p < last) {
            cmd->args[0].data = p + 1;
            cmd->args[0].len = last - (p + 1);
            cmd->nargs = 1;
        }

        return NGX_OK;
    }

    for ( ;; ) {

        while (p < last && *p == ' ') {
            p++;
        }

        if (p == last) {
            return NGX_OK;
        }

        if (cmd->nargs == NGX_P3X_MAX_ARGS) {
            return NGX_P3X_PARSE_TOO_MANY;
        }

        arg = p;

        while (p < last && *p != ' ') {
            p++;
        }

        cmd->args[cmd->nargs].data = arg;
        cmd->args[cmd->nargs].len = p - arg;
        cmd->nargs++;
    }
}


/* no library call: the parser links alone into unit tests and fuzzers */

ngx_int_t
ngx_p3x_parse_number(ngx_str_t *arg)
{
    size_t     i;
    ngx_int_t  n;

    if (arg->len == 0 || arg->len > 10) {
        return NGX_ERROR;
    }

    n = 0;

    for (i = 0; i < arg->len; i++) {
        if (arg->data[i] < '0' || arg->data[i] > '9') {
            return NGX_ERROR;
        }

        n = n * 10 + (arg->data[i] - '0');
    }

    if (n > 0x7fffffff) {
        return NGX_ERROR;
    }

    return n;
}


static ngx_p3x_cmd_e
ngx_p3x_lookup(u_char *p, size_t len)
{
    u_char              up[4];
    size_t              i;
    ngx_p3x_keyword_t  *k;

    if (len < 3 || len > 4) {
        return ngx_p3x_cmd_unknown;
    }

    for (i = 0; i < len; i++) {
        up[i] = ngx_toupper(p[i]);
    }

    for (k = ngx_p3x_keywords; k->name[0]; k++) {
        if (ngx_strlen(k->name) == len && ngx_memcmp(k->name, up, len) == 0) {
            return k->command;
        }
    }

    return ngx_p3x_cmd_unknown;
}
