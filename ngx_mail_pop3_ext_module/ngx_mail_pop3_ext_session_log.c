
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * The session log (pop3_ext_session_log PATH [json]): one line per
 * session, written when it ends, in a file of its own.  The file is one
 * of nginx's open files (ngx_conf_open_file()): opened by the master,
 * reopened on USR1 like the error log, written with one write() per line
 * in append mode, so lines of the workers never interleave.
 *
 * The text form is key=value pairs after the time; values that a client
 * chose (the user name) are quoted, with '"' and '\' escaped and any
 * other octet below 0x20 or 0x7f written as \xHH, so a line is always
 * one line.  The JSON form is one object per line, valid UTF-8: octets
 * of a name that are not UTF-8 are written as \u00HH.
 */


#include "ngx_mail_pop3_ext_module.h"


/* a user name at its longest, every octet escaped, and the rest */
#define NGX_P3X_SESSION_LOG_MAX  (6 * P3X_NAME_MAX + 1024)


/* what both forms of the line say, worked out once */
typedef struct {
    ngx_msec_t                ms;             /* the session's duration */
    ngx_uint_t                removed;        /* by the commit, if any */
    off_t                     removed_octets;
    ngx_uint_t                left;
    const char               *login;          /* ok, failed or none */
    const char               *outcome;
} ngx_p3x_session_log_end_t;


static u_char *ngx_p3x_session_log_time(u_char *p);
static u_char *ngx_p3x_session_log_text(u_char *p, u_char *last,
    ngx_p3x_ctx_t *ctx, ngx_p3x_session_log_end_t *end);
static u_char *ngx_p3x_session_log_json(u_char *p, u_char *last,
    ngx_p3x_ctx_t *ctx, ngx_p3x_session_log_end_t *end);
static u_char *ngx_p3x_session_log_quote(u_char *p, u_char *last,
    u_char *s, size_t len);
static u_char *ngx_p3x_session_log_json_str(u_char *p, u_char *last,
    u_char *s, size_t len);


static const char  *ngx_p3x_session_log_methods[] = {
    "-", "user", "plain", "login", "cram-md5", "apop", "external"
};


/* pop3_ext_session_log off | PATH [json | text]; */

char *
ngx_p3x_session_log_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_mail_pop3_ext_metrics_srv_conf_t *mscf = conf;

    ngx_str_t  *value;

    if (mscf->session_log != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    mscf->session_log_json = 0;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts > 2) {
            return "takes no format with \"off\"";
        }

        mscf->session_log = NULL;
        return NGX_CONF_OK;
    }

    if (cf->args->nelts > 2) {
        if (ngx_strcmp(value[2].data, "json") == 0) {
            mscf->session_log_json = 1;

        } else if (ngx_strcmp(value[2].data, "text") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid session log format \"%V\"",
                               &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    mscf->session_log = ngx_conf_open_file(cf->cycle, &value[1]);
    if (mscf->session_log == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


void
ngx_p3x_session_log_write(ngx_p3x_ctx_t *ctx, const char *outcome)
{
    u_char                                *p, *last;
    ssize_t                                n;
    ngx_err_t                              err;
    ngx_open_file_t                       *file;
    ngx_p3x_session_stats_t               *st;
    ngx_p3x_session_log_end_t              end;
    ngx_mail_pop3_ext_metrics_srv_conf_t  *mscf;
    u_char                                 line[NGX_P3X_SESSION_LOG_MAX];

    static time_t                          error_logged;

    mscf = ngx_mail_get_module_srv_conf(ctx->session,
                                        ngx_mail_pop3_ext_metrics_module);
    file = mscf->session_log;

    /* without a commit, nothing was removed */

    st = &ctx->stats;

    end.ms = ngx_current_msec - st->start;
    end.removed = ctx->committed ? ctx->removed : 0;
    end.removed_octets = ctx->committed ? ctx->removed_octets : 0;
    end.left = ctx->nmsgs - end.removed;
    end.login = st->logged_in ? "ok" : st->failed ? "failed" : "none";
    end.outcome = outcome;

    /* room for the line end */
    last = line + sizeof(line) - 1;

    if (mscf->session_log_json) {
        p = ngx_p3x_session_log_json(line, last, ctx, &end);

    } else {
        p = ngx_p3x_session_log_text(line, last, ctx, &end);
    }

    *p++ = LF;

    n = ngx_write_fd(file->fd, line, p - line);

    if (n == p - line) {
        return;
    }

    /* once a second at most: a full disk must not flood the error log */

    if (error_logged == ngx_time()) {
        return;
    }

    error_logged = ngx_time();
    err = (n == -1) ? ngx_errno : 0;

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, err,
                  "pop3_ext: writing the session log \"%V\" failed%s",
                  &file->name, n == -1 ? "" : " (incomplete write)");
}


/* ISO 8601 in local time, with milliseconds */

static u_char *
ngx_p3x_session_log_time(u_char *p)
{
    ngx_tm_t     tm;
    ngx_int_t    off;
    ngx_time_t  *tp;

    tp = ngx_timeofday();
    ngx_localtime(tp->sec, &tm);

    off = tp->gmtoff;

    return ngx_sprintf(p, "%4d-%02d-%02dT%02d:%02d:%02d.%03M%c%02i:%02i",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                       tp->msec, off < 0 ? '-' : '+',
                       ngx_abs(off / 60), ngx_abs(off % 60));
}


/*
 * time pop3_ext_session host=H pid=P conn=N client=ADDR server=ADDR:PORT
 * user="NAME" method=M login=ok|failed|none failed_logins=N tls=V
 * cipher=C duration=S.mmm commands=N retr=N/OCTETS dele=N/OCTETS left=N
 * end=OUTCOME reason="..."
 */

static u_char *
ngx_p3x_session_log_text(u_char *p, u_char *last, ngx_p3x_ctx_t *ctx,
    ngx_p3x_session_log_end_t *end)
{
    ngx_connection_t         *c;
    ngx_p3x_session_stats_t  *st;

    c = ctx->connection;
    st = &ctx->stats;

    p = ngx_p3x_session_log_time(p);

    p = ngx_slprintf(p, last, " pop3_ext_session host=%V pid=%P conn=%uA "
                     "client=%V server=%V user=",
                     &ngx_cycle->hostname, ngx_pid, c->number,
                     &c->addr_text, ctx->session->addr_text);

    p = ngx_p3x_session_log_quote(p, last, ctx->user.data, ctx->user.len);

    return ngx_slprintf(p, last, " method=%s login=%s failed_logins=%ui "
                        "tls=%s cipher=%s duration=%M.%03M commands=%ui "
                        "retr=%ui/%O dele=%ui/%O left=%ui end=%s "
                        "reason=\"%s\"",
                        ngx_p3x_session_log_methods[st->method],
                        end->login, st->failed,
                        st->tls_protocol ? st->tls_protocol : "-",
                        st->tls_cipher ? st->tls_cipher : "-",
                        end->ms / 1000, end->ms % 1000, ctx->commands,
                        ctx->retrieved, ctx->retrieved_octets,
                        end->removed, end->removed_octets, end->left,
                        end->outcome, ctx->end_reason);
}


static u_char *
ngx_p3x_session_log_json(u_char *p, u_char *last, ngx_p3x_ctx_t *ctx,
    ngx_p3x_session_log_end_t *end)
{
    ngx_connection_t         *c;
    ngx_p3x_session_stats_t  *st;

    c = ctx->connection;
    st = &ctx->stats;

    p = ngx_slprintf(p, last, "{\"time\":\"");
    p = ngx_p3x_session_log_time(p);

    p = ngx_slprintf(p, last, "\",\"host\":");
    p = ngx_p3x_session_log_json_str(p, last, ngx_cycle->hostname.data,
                                     ngx_cycle->hostname.len);
    p = ngx_slprintf(p, last, ",\"pid\":%P,\"connection\":%uA,\"client\":",
                     ngx_pid, c->number);
    p = ngx_p3x_session_log_json_str(p, last, c->addr_text.data,
                                     c->addr_text.len);
    p = ngx_slprintf(p, last, ",\"server\":");
    p = ngx_p3x_session_log_json_str(p, last, ctx->session->addr_text->data,
                                     ctx->session->addr_text->len);
    p = ngx_slprintf(p, last, ",\"user\":");
    p = ngx_p3x_session_log_json_str(p, last, ctx->user.data, ctx->user.len);

    if (st->method) {
        p = ngx_slprintf(p, last, ",\"method\":\"%s\"",
                         ngx_p3x_session_log_methods[st->method]);

    } else {
        p = ngx_slprintf(p, last, ",\"method\":null");
    }

    p = ngx_slprintf(p, last, ",\"login\":\"%s\",\"failed_logins\":%ui",
                     end->login, st->failed);

    if (st->tls_protocol) {
        p = ngx_slprintf(p, last, ",\"tls_protocol\":\"%s\","
                         "\"tls_cipher\":\"%s\"", st->tls_protocol,
                         st->tls_cipher ? st->tls_cipher : "");

    } else {
        p = ngx_slprintf(p, last, ",\"tls_protocol\":null,"
                         "\"tls_cipher\":null");
    }

    return ngx_slprintf(p, last, ",\"duration\":%M.%03M,\"commands\":%ui,"
                        "\"retrieved\":%ui,\"retrieved_octets\":%O,"
                        "\"deleted\":%ui,\"deleted_octets\":%O,"
                        "\"left\":%ui,\"end\":\"%s\",\"reason\":\"%s\"}",
                        end->ms / 1000, end->ms % 1000, ctx->commands,
                        ctx->retrieved, ctx->retrieved_octets,
                        end->removed, end->removed_octets, end->left,
                        end->outcome, ctx->end_reason);
}


static u_char *
ngx_p3x_session_log_quote(u_char *p, u_char *last, u_char *s, size_t len)
{
    size_t  i;

    if (last - p < 2) {
        return p;
    }

    *p++ = '"';

    for (i = 0; i < len && last - p > 5; i++) {

        if (s[i] == '"' || s[i] == '\\') {
            *p++ = '\\';
            *p++ = s[i];

        } else if (s[i] < 0x20 || s[i] == 0x7f) {
            p = ngx_sprintf(p, "\\x%02xD", (uint32_t) s[i]);

        } else {
            *p++ = s[i];
        }
    }

    *p++ = '"';

    return p;
}


/*
 * A JSON string: valid UTF-8 sequences as they are, every other octet
 * as the code point of its value, so the line stays valid JSON.
 */

static u_char *
ngx_p3x_session_log_json_str(u_char *p, u_char *last, u_char *s, size_t len)
{
    u_char    *end, *next;
    uint32_t   cp;

    if (last - p < 2) {
        return p;
    }

    *p++ = '"';
    end = s + len;

    while (s < end && last - p > 7) {

        if (*s < 0x80) {

            if (*s == '"' || *s == '\\') {
                *p++ = '\\';
                *p++ = *s;

            } else if (*s < 0x20 || *s == 0x7f) {
                p = ngx_sprintf(p, "\\u%04xD", (uint32_t) *s);

            } else {
                *p++ = *s;
            }

            s++;
            continue;
        }

        next = s;
        cp = ngx_utf8_decode(&next, end - s);

        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)
            || (size_t) (last - p) <= (size_t) (next - s))
        {
            p = ngx_sprintf(p, "\\u%04xD", (uint32_t) *s);
            s++;
            continue;
        }

        p = ngx_cpymem(p, s, next - s);
        s = next;
    }

    *p++ = '"';

    return p;
}
