
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * libFuzzer target: the LMTP command decoding of _lmtp_parse.c over
 * arbitrary client input.  The input is cut into command lines as the
 * session cuts its buffer, and each line goes through what the session
 * does with it: the paths of MAIL FROM and RCPT TO, their parameters,
 * SIZE=, BDAT's argument and the user name a recipient names.  The whole
 * input is also given to each of them as one argument, NULs and line
 * ends included, which the command parser would refuse before them.
 *
 * Every result must lie within what it was taken from, and the user name
 * within its buffer (one of exactly P3X_NAME_MAX octets, as the
 * session's); a size must be the number its digits say.
 *
 * _lmtp_parse.c needs one function of nginx's core that is not inline,
 * ngx_strncasecmp(); this target is linked with the module's file alone,
 * as the others are, so it is defined here, with the contract of
 * nginx's: at most n octets compared, ASCII letters without case, equal
 * up to a NUL in both.
 */


#include "ngx_mail_pop3_ext_lmtp.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_within(ngx_str_t *s, u_char *start, u_char *end);
static void fuzz_size(u_char *p, size_t len);
static void fuzz_arg(ngx_str_t *arg, u_char *name);
static void fuzz_params(ngx_str_t *params);
static void fuzz_user(ngx_str_t *path, u_char *name);


ngx_int_t
ngx_strncasecmp(u_char *s1, u_char *s2, size_t n)
{
    ngx_uint_t  c1, c2;

    for ( /* void */ ; n; n--) {
        c1 = *s1++;
        c2 = *s2++;

        if (c1 >= 'A' && c1 <= 'Z') {
            c1 += 'a' - 'A';
        }

        if (c2 >= 'A' && c2 <= 'Z') {
            c2 += 'a' - 'A';
        }

        if (c1 != c2) {
            return (ngx_int_t) c1 - (ngx_int_t) c2;
        }

        if (c1 == 0) {
            return 0;
        }
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char              *buf, *name, *p, *end, *next;
    ngx_int_t            rc;
    ngx_str_t            whole;
    ngx_p3x_lmtp_cmd_t   cmd;

    /*
     * copies of exactly the input, and a name buffer of the session's
     * size: reads and writes past them are caught
     */

    buf = malloc(size ? size : 1);
    name = malloc(P3X_NAME_MAX);

    if (buf == NULL || name == NULL) {
        free(buf);
        free(name);
        return 0;
    }

    memcpy(buf, data, size);

    p = buf;
    end = buf + size;

    while (p < end) {
        rc = ngx_p3x_lmtp_parse_command(p, end, &cmd, &next);

        if (rc == NGX_AGAIN) {
            if (memchr(p, LF, end - p) != NULL) {
                abort();
            }

            break;
        }

        if (next <= p || next > end || next[-1] != LF) {
            abort();
        }

        if (cmd.line.data != p
            || cmd.line.len > (size_t) (next - 1 - p)
            || cmd.line.len + 2 < (size_t) (next - p))
        {
            abort();
        }

        if (rc == NGX_OK) {
            fuzz_within(&cmd.name, p, p + cmd.line.len);
            fuzz_within(&cmd.arg, p, p + cmd.line.len);

            if (cmd.arg.len
                && cmd.arg.data + cmd.arg.len != p + cmd.line.len)
            {
                abort();
            }

            /* the session runs only lines within its limit */

            if (cmd.line.len + 2 <= NGX_P3X_LMTP_LINE_MAX) {
                fuzz_arg(&cmd.arg, name);
            }

        } else if (rc != NGX_P3X_LMTP_PARSE_INVALID) {
            abort();
        }

        p = next;
    }

    whole.data = buf;
    whole.len = size;

    fuzz_arg(&whole, name);

    free(buf);
    free(name);

    return 0;
}


static void
fuzz_within(ngx_str_t *s, u_char *start, u_char *end)
{
    if (s->data < start || s->data > end
        || s->len > (size_t) (end - s->data))
    {
        abort();
    }
}


/* ngx_p3x_lmtp_parse_size() against the value its digits say */

static void
fuzz_size(u_char *p, size_t len)
{
    off_t               n;
    size_t              i;
    ngx_int_t           rc;
    ngx_uint_t          digits;
    unsigned __int128   v;

    /* the value in 128 bits: it stops growing past off_t's limit */

    digits = (len > 0);
    v = 0;

    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            digits = 0;
            break;
        }

        if (v <= NGX_MAX_OFF_T_VALUE) {
            v = v * 10 + (p[i] - '0');
        }
    }

    n = -1;
    rc = ngx_p3x_lmtp_parse_size(p, len, &n);

    if (!digits) {
        if (rc != NGX_ERROR) {
            abort();
        }

        return;
    }

    if (v > NGX_MAX_OFF_T_VALUE) {
        if (rc != NGX_DECLINED) {
            abort();
        }

        return;
    }

    if (rc != NGX_OK || n < 0 || (unsigned __int128) n != v) {
        abort();
    }
}


/* what the session does with a command's argument */

static void
fuzz_arg(ngx_str_t *arg, u_char *name)
{
    off_t        size;
    u_char      *end;
    ngx_str_t    path, params;
    ngx_uint_t   i, last_chunk;

    static const char  *prefixes[] = { "FROM", "TO" };

    end = arg->data + arg->len;

    for (i = 0; i < 2; i++) {
        if (ngx_p3x_lmtp_parse_path(arg, prefixes[i], &path, &params)
            != NGX_OK)
        {
            continue;
        }

        fuzz_within(&path, arg->data, end);
        fuzz_within(&params, arg->data, end);

        if (params.data < path.data + path.len) {
            abort();
        }

        fuzz_params(&params);
        fuzz_user(&path, name);
    }

    size = -1;

    if (ngx_p3x_lmtp_parse_bdat(arg, &size, &last_chunk) == NGX_OK) {
        if (size < 0 || last_chunk > 1) {
            abort();
        }
    }

    fuzz_size(arg->data, arg->len);
    fuzz_user(arg, name);
}


static void
fuzz_params(ngx_str_t *params)
{
    u_char      *start, *end;
    size_t       left;
    ngx_int_t    rc;
    ngx_str_t    key, value;

    start = params->data;
    end = params->data + params->len;

    for ( ;; ) {
        left = params->len;

        rc = ngx_p3x_lmtp_next_param(params, &key, &value);

        if (rc == NGX_DONE) {
            break;
        }

        fuzz_within(params, start, end);

        if (params->data + params->len != end || params->len >= left) {
            abort();        /* no progress: the session would loop */
        }

        if (rc == NGX_ERROR) {
            break;
        }

        if (rc != NGX_OK || key.len == 0) {
            abort();
        }

        fuzz_within(&key, start, end);
        fuzz_within(&value, start, end);

        fuzz_size(value.data, value.len);
    }
}


static void
fuzz_user(ngx_str_t *path, u_char *name)
{
    ngx_str_t   user;
    ngx_uint_t  local_part;

    for (local_part = 0; local_part < 2; local_part++) {
        if (ngx_p3x_lmtp_user_name(path, local_part, name, &user)
            != NGX_OK)
        {
            continue;
        }

        if (user.data != name || user.len > P3X_NAME_MAX
            || !p3x_valid_name(user.data, user.len))
        {
            abort();
        }
    }
}
