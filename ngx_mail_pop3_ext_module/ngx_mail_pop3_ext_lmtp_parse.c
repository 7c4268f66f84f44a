
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * LMTP command decoding (RFC 2033, RFC 5321's grammar): a command line,
 * the path of MAIL FROM and RCPT TO with its parameters, and what a
 * recipient address names.  Pure: it touches no session, so it can be
 * fuzzed alone.
 */


#include "ngx_mail_pop3_ext_lmtp.h"


typedef struct {
    ngx_str_t                 name;
    ngx_p3x_lmtp_cmd_e        command;
} ngx_p3x_lmtp_verb_t;


static ngx_p3x_lmtp_verb_t  ngx_p3x_lmtp_verbs[] = {
    { ngx_string("LHLO"), ngx_p3x_lmtp_cmd_lhlo },
    { ngx_string("MAIL"), ngx_p3x_lmtp_cmd_mail },
    { ngx_string("RCPT"), ngx_p3x_lmtp_cmd_rcpt },
    { ngx_string("DATA"), ngx_p3x_lmtp_cmd_data },
    { ngx_string("BDAT"), ngx_p3x_lmtp_cmd_bdat },
    { ngx_string("RSET"), ngx_p3x_lmtp_cmd_rset },
    { ngx_string("NOOP"), ngx_p3x_lmtp_cmd_noop },
    { ngx_string("QUIT"), ngx_p3x_lmtp_cmd_quit },
    { ngx_string("VRFY"), ngx_p3x_lmtp_cmd_vrfy },
    { ngx_string("EXPN"), ngx_p3x_lmtp_cmd_expn },
    { ngx_string("HELO"), ngx_p3x_lmtp_cmd_helo },
    { ngx_string("EHLO"), ngx_p3x_lmtp_cmd_helo },
    { ngx_string("HELP"), ngx_p3x_lmtp_cmd_help },
    { ngx_string("STARTTLS"), ngx_p3x_lmtp_cmd_starttls },
    { ngx_null_string, ngx_p3x_lmtp_cmd_unknown }
};


/*
 * One command line from [p, last): NGX_AGAIN without a line end yet,
 * else NGX_OK or NGX_P3X_LMTP_PARSE_INVALID (a NUL or another control
 * octet); *next is past the line end.  The verb is matched without case,
 * the argument is what follows the first space, without the line end.
 * A bare LF ends a line too: a command is not data, and being strict here
 * would only turn a sloppy client's command into a confusing error.
 */

ngx_int_t
ngx_p3x_lmtp_parse_command(u_char *p, u_char *last, ngx_p3x_lmtp_cmd_t *cmd,
    u_char **next)
{
    u_char               *lf, *end, *q;
    ngx_p3x_lmtp_verb_t  *v;

    lf = ngx_strlchr(p, last, LF);
    if (lf == NULL) {
        return NGX_AGAIN;
    }

    *next = lf + 1;

    end = lf;

    if (end > p && end[-1] == CR) {
        end--;
    }

    cmd->line.data = p;
    cmd->line.len = end - p;
    cmd->command = ngx_p3x_lmtp_cmd_unknown;
    cmd->arg.data = end;
    cmd->arg.len = 0;

    for (q = p; q < end; q++) {
        if (*q < 0x20 && *q != '\t') {
            return NGX_P3X_LMTP_PARSE_INVALID;
        }
    }

    for (q = p; q < end && *q != ' '; q++) {
        /* void */
    }

    cmd->name.data = p;
    cmd->name.len = q - p;

    if (q < end) {
        cmd->arg.data = q + 1;
        cmd->arg.len = end - (q + 1);
    }

    for (v = ngx_p3x_lmtp_verbs; v->name.len; v++) {
        if (v->name.len == cmd->name.len
            && ngx_strncasecmp(v->name.data, cmd->name.data, v->name.len)
               == 0)
        {
            cmd->command = v->command;
            break;
        }
    }

    return NGX_OK;
}


/*
 * "FROM:<path> params" or "TO:<path> params" (prefix without the colon).
 * The path is what is between the angle brackets; a quoted local part
 * may hold ">" and spaces.  Some clients put a space after the colon;
 * it is allowed.  NGX_ERROR: a syntax error.
 */

ngx_int_t
ngx_p3x_lmtp_parse_path(ngx_str_t *arg, const char *prefix, ngx_str_t *path,
    ngx_str_t *params)
{
    u_char  *p, *last;
    size_t   n;

    n = ngx_strlen(prefix);
    p = arg->data;
    last = arg->data + arg->len;

    if ((size_t) (last - p) < n + 1
        || ngx_strncasecmp(p, (u_char *) prefix, n) != 0
        || p[n] != ':')
    {
        return NGX_ERROR;
    }

    p += n + 1;

    while (p < last && *p == ' ') {
        p++;
    }

    if (p == last || *p != '<') {
        return NGX_ERROR;
    }

    path->data = ++p;

    for ( /* void */ ; p < last && *p != '>'; p++) {

        if (*p == '"') {
            for (p++; p < last && *p != '"'; p++) {
                if (*p == '\\' && p + 1 < last) {
                    p++;
                }
            }

            if (p == last) {
                return NGX_ERROR;
            }
        }
    }

    if (p == last) {
        return NGX_ERROR;
    }

    path->len = p - path->data;

    p++;

    if (p < last && *p != ' ') {
        return NGX_ERROR;
    }

    while (p < last && *p == ' ') {
        p++;
    }

    params->data = p;
    params->len = last - p;

    return NGX_OK;
}


/*
 * The next "KEYWORD[=VALUE]" of a parameter list; NGX_DONE at its end.
 */

ngx_int_t
ngx_p3x_lmtp_next_param(ngx_str_t *params, ngx_str_t *key, ngx_str_t *value)
{
    u_char  *p, *last, *eq;

    p = params->data;
    last = params->data + params->len;

    while (p < last && *p == ' ') {
        p++;
    }

    if (p == last) {
        return NGX_DONE;
    }

    key->data = p;
    eq = NULL;

    while (p < last && *p != ' ') {
        if (*p == '=' && eq == NULL) {
            eq = p;
        }

        p++;
    }

    if (eq) {
        key->len = eq - key->data;
        value->data = eq + 1;
        value->len = p - (eq + 1);

    } else {
        key->len = p - key->data;
        value->data = p;
        value->len = 0;
    }

    params->data = p;
    params->len = last - p;

    return key->len ? NGX_OK : NGX_ERROR;
}


/*
 * A decimal size: MAIL's SIZE= (RFC 1870, 1*20DIGIT) and BDAT's
 * chunk-size (RFC 3030, 1*DIGIT).  NGX_ERROR: not a number; NGX_DECLINED:
 * a number beyond off_t, which no limit can allow.
 */

ngx_int_t
ngx_p3x_lmtp_parse_size(u_char *p, size_t len, off_t *size)
{
    off_t        n, d;
    u_char      *last;
    ngx_uint_t   huge;

    if (len == 0) {
        return NGX_ERROR;
    }

    last = p + len;
    n = 0;
    huge = 0;

    for ( /* void */ ; p < last; p++) {

        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        d = *p - '0';

        if (n > (NGX_MAX_OFF_T_VALUE - d) / 10) {
            huge = 1;
            continue;
        }

        n = n * 10 + d;
    }

    if (huge) {
        return NGX_DECLINED;
    }

    *size = n;

    return NGX_OK;
}


/*
 * BDAT's argument, "SIZE" or "SIZE LAST" (RFC 3030, 2; LAST in any case).
 * NGX_ERROR: anything else, a size beyond off_t included: the chunk that
 * follows cannot be told from commands.
 */

ngx_int_t
ngx_p3x_lmtp_parse_bdat(ngx_str_t *arg, off_t *size, ngx_uint_t *last_chunk)
{
    u_char  *p, *last, *sp;

    p = arg->data;
    last = arg->data + arg->len;

    sp = ngx_strlchr(p, last, ' ');

    if (ngx_p3x_lmtp_parse_size(p, (sp ? sp : last) - p, size) != NGX_OK) {
        return NGX_ERROR;
    }

    *last_chunk = 0;

    if (sp == NULL) {
        return NGX_OK;
    }

    if (last - (sp + 1) != 4
        || ngx_strncasecmp(sp + 1, (u_char *) "LAST", 4) != 0)
    {
        return NGX_ERROR;
    }

    *last_chunk = 1;

    return NGX_OK;
}


/*
 * The user name a recipient names: the address as it is, or its local
 * part (before the last "@"), unquoted.  A source route ("@a,@b:") is
 * dropped, as RFC 5321 lets a server do.  NGX_DECLINED: no user can have
 * that name (p3x_valid_name()).
 */

ngx_int_t
ngx_p3x_lmtp_user_name(ngx_str_t *path, ngx_uint_t local_part,
    u_char *buf, ngx_str_t *name)
{
    u_char  *p, *last, *at, *d;

    p = path->data;
    last = path->data + path->len;

    if (p < last && *p == '@') {
        p = ngx_strlchr(p, last, ':');
        if (p == NULL) {
            return NGX_DECLINED;
        }

        p++;
    }

    at = NULL;

    if (local_part) {
        for (d = last; d > p; d--) {
            if (d[-1] == '@') {
                at = d - 1;
                break;
            }
        }

        if (at) {
            last = at;
        }
    }

    /* a quoted local part: its content, with the quoting undone */

    d = buf;

    if (p < last && *p == '"' && (at || !local_part)) {
        for (p++; p < last && *p != '"'; p++) {
            if (*p == '\\' && p + 1 < last) {
                p++;
            }

            if (d - buf == P3X_NAME_MAX) {
                return NGX_DECLINED;
            }

            *d++ = *p;
        }

        if (p == last) {
            return NGX_DECLINED;
        }

        p++;
    }

    if ((size_t) (last - p) > P3X_NAME_MAX - (size_t) (d - buf)) {
        return NGX_DECLINED;
    }

    d = ngx_cpymem(d, p, last - p);

    name->data = buf;
    name->len = d - buf;

    if (!p3x_valid_name(name->data, name->len)) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}
