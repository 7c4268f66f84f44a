
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * The POP3 command parser: a pure function over a byte range, with no
 * state between calls and no allocation, so that it can be unit-tested and
 * fuzzed on its own.
 */


#ifndef _NGX_MAIL_POP3_EXT_PARSE_H_INCLUDED_
#define _NGX_MAIL_POP3_EXT_PARSE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_P3X_MAX_ARGS          3

/* parse results besides NGX_OK and NGX_AGAIN */
#define NGX_P3X_PARSE_INVALID     -10     /* NUL, bare CR, control octet */
#define NGX_P3X_PARSE_TOO_MANY    -11     /* more arguments than allowed */
#define NGX_P3X_PARSE_EMPTY       -12     /* a line with no keyword */


typedef enum {
    ngx_p3x_cmd_unknown = 0,
    ngx_p3x_cmd_user,
    ngx_p3x_cmd_pass,
    ngx_p3x_cmd_apop,
    ngx_p3x_cmd_auth,
    ngx_p3x_cmd_stls,
    ngx_p3x_cmd_capa,
    ngx_p3x_cmd_quit,
    ngx_p3x_cmd_noop,
    ngx_p3x_cmd_stat,
    ngx_p3x_cmd_list,
    ngx_p3x_cmd_retr,
    ngx_p3x_cmd_dele,
    ngx_p3x_cmd_rset,
    ngx_p3x_cmd_top,
    ngx_p3x_cmd_uidl,
    ngx_p3x_cmd_last,
    ngx_p3x_cmd_utf8,
    NGX_P3X_CMDS                             /* how many there are */
} ngx_p3x_cmd_e;


typedef struct {
    ngx_p3x_cmd_e   command;
    ngx_str_t       name;                    /* the keyword as sent */
    ngx_uint_t      nargs;
    ngx_str_t       args[NGX_P3X_MAX_ARGS];
} ngx_p3x_cmd_t;


/*
 * Parses one line from [start, end).  Returns NGX_AGAIN when no line end
 * is there yet; otherwise sets *next past the line end (LF, CRLF) and
 * returns NGX_OK or an NGX_P3X_PARSE_* error.  PASS takes the rest of the
 * line as its one argument, since passwords may contain spaces.
 */
ngx_int_t ngx_p3x_parse_command(u_char *start, u_char *end,
    ngx_p3x_cmd_t *cmd, u_char **next);

/* a decimal message number or line count; NGX_ERROR if not one */
ngx_int_t ngx_p3x_parse_number(ngx_str_t *arg);


#endif /* _NGX_MAIL_POP3_EXT_PARSE_H_INCLUDED_ */
