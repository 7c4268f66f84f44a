
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * Password verification.  A SHA512-CRYPT check costs about 1.6 ms and a
 * bcrypt one 50 ms: on the event loop that would stall every session of
 * the worker, so each check runs as a task in an nginx thread pool and
 * the session waits for its completion event.
 *
 * Stored secrets use Dovecot's notation, "{SCHEME}value".
 */


#include <crypt.h>

#include "ngx_mail_pop3_ext_module.h"


typedef ngx_int_t (*ngx_p3x_verify_pt)(ngx_str_t *value, ngx_str_t *pw);


typedef struct {
    ngx_str_t           name;
    ngx_p3x_verify_pt   verify;
} ngx_p3x_scheme_t;


struct ngx_p3x_auth_task_s {
    ngx_p3x_ctx_t            *ctx;      /* NULL once the session is gone */
    ngx_p3x_auth_handler_pt   handler;
    ngx_str_t                 secret;
    ngx_str_t                 password;
    ngx_int_t                 result;
    ngx_thread_task_t         task;
};


static void ngx_p3x_auth_thread(void *data, ngx_log_t *log);
static void ngx_p3x_auth_done(ngx_event_t *ev);
static void ngx_p3x_auth_free(ngx_p3x_auth_task_t *t);
static ngx_int_t ngx_p3x_verify_crypt(ngx_str_t *value, ngx_str_t *pw);
static ngx_int_t ngx_p3x_verify_plain(ngx_str_t *value, ngx_str_t *pw);
static ngx_int_t ngx_p3x_ct_equal(u_char *a, size_t alen, u_char *b,
    size_t blen);


static ngx_p3x_scheme_t  ngx_p3x_schemes[] = {
    { ngx_string("SHA512-CRYPT"), ngx_p3x_verify_crypt },
    { ngx_string("SHA256-CRYPT"), ngx_p3x_verify_crypt },
    { ngx_string("BLF-CRYPT"), ngx_p3x_verify_crypt },
    { ngx_string("MD5-CRYPT"), ngx_p3x_verify_crypt },
    { ngx_string("CRYPT"), ngx_p3x_verify_crypt },
    { ngx_string("PLAIN"), ngx_p3x_verify_plain },
    { ngx_null_string, NULL }
};


/*
 * The session gets handler(ctx, NGX_OK) on a match, NGX_DECLINED on a
 * mismatch, NGX_ERROR when the secret is unusable.  The secret and the
 * password are copied, so the caller may drop them at once.
 */

ngx_int_t
ngx_p3x_auth_verify(ngx_p3x_ctx_t *ctx, ngx_str_t *secret,
    ngx_str_t *password, ngx_p3x_auth_handler_pt handler)
{
    u_char               *p;
    ngx_p3x_auth_task_t  *t;

    t = ngx_calloc(sizeof(ngx_p3x_auth_task_t) + secret->len + 1
                   + password->len + 1, ctx->connection->log);
    if (t == NULL) {
        return NGX_ERROR;
    }

    p = (u_char *) (t + 1);

    t->secret.data = p;
    t->secret.len = secret->len;
    p = ngx_cpymem(p, secret->data, secret->len);
    *p++ = '\0';

    t->password.data = p;
    t->password.len = password->len;
    p = ngx_cpymem(p, password->data, password->len);
    *p = '\0';

    t->ctx = ctx;
    t->handler = handler;
    t->result = NGX_ERROR;

    t->task.ctx = t;
    t->task.handler = ngx_p3x_auth_thread;
    t->task.event.handler = ngx_p3x_auth_done;
    t->task.event.data = t;
    t->task.event.log = ngx_cycle->log;

    if (ngx_thread_task_post(ctx->conf->thread_pool, &t->task) != NGX_OK) {
        ngx_p3x_auth_free(t);
        return NGX_ERROR;
    }

    ctx->auth_task = t;

    return NGX_OK;
}


void
ngx_p3x_auth_cancel(ngx_p3x_ctx_t *ctx)
{
    if (ctx->auth_task) {
        ctx->auth_task->ctx = NULL;
        ctx->auth_task = NULL;
    }
}


/* runs in a pool thread: touches nothing but the task */

static void
ngx_p3x_auth_thread(void *data, ngx_log_t *log)
{
    ngx_p3x_auth_task_t  *t = data;

    u_char            *p, *end;
    ngx_str_t          name, value;
    ngx_p3x_scheme_t  *s;

    p = t->secret.data;
    end = p + t->secret.len;

    if (p < end && *p == '{') {
        name.data = p + 1;

        p = ngx_strlchr(p, end, '}');
        if (p == NULL) {
            t->result = NGX_ERROR;
            return;
        }

        name.len = p - name.data;
        value.data = p + 1;
        value.len = end - value.data;

    } else {
        /* no scheme: a crypt(3) string, as Dovecot's default */
        ngx_str_set(&name, "CRYPT");
        value = t->secret;
    }

    for (s = ngx_p3x_schemes; s->name.len; s++) {
        if (s->name.len == name.len
            && ngx_strncasecmp(s->name.data, name.data, name.len) == 0)
        {
            t->result = s->verify(&value, &t->password);
            return;
        }
    }

    t->result = NGX_ERROR;
}


static void
ngx_p3x_auth_done(ngx_event_t *ev)
{
    ngx_p3x_auth_task_t  *t = ev->data;

    ngx_p3x_ctx_t  *ctx;

    ctx = t->ctx;

    if (ctx) {
        ctx->auth_task = NULL;

        if (t->result == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                          "pop3_ext: the stored secret of user \"%V\" "
                          "has an unknown scheme or format", &ctx->user);
        }

        t->handler(ctx, t->result);
    }

    ngx_p3x_auth_free(t);
}


static void
ngx_p3x_auth_free(ngx_p3x_auth_task_t *t)
{
    ngx_explicit_memzero(t->password.data, t->password.len);
    ngx_free(t);
}


static ngx_int_t
ngx_p3x_verify_crypt(ngx_str_t *value, ngx_str_t *pw)
{
    char                *hash;
    ngx_int_t            rc;
    struct crypt_data   *cd;

    /* value and pw are NUL-terminated by ngx_p3x_auth_verify() */

    if (value->len == 0 || ngx_strlen(pw->data) != pw->len) {
        return NGX_DECLINED;
    }

    cd = ngx_calloc(sizeof(struct crypt_data), ngx_cycle->log);
    if (cd == NULL) {
        return NGX_DECLINED;
    }

    hash = crypt_r((char *) pw->data, (char *) value->data, cd);

    if (hash == NULL || hash[0] == '*') {
        rc = NGX_ERROR;

    } else {
        rc = ngx_p3x_ct_equal((u_char *) hash, ngx_strlen(hash),
                              value->data, value->len)
             ? NGX_OK : NGX_DECLINED;
    }

    ngx_explicit_memzero(cd, sizeof(struct crypt_data));
    ngx_free(cd);

    return rc;
}


static ngx_int_t
ngx_p3x_verify_plain(ngx_str_t *value, ngx_str_t *pw)
{
    return ngx_p3x_ct_equal(value->data, value->len, pw->data, pw->len)
           ? NGX_OK : NGX_DECLINED;
}


/* compares in a time that depends on the lengths only */

static ngx_int_t
ngx_p3x_ct_equal(u_char *a, size_t alen, u_char *b, size_t blen)
{
    size_t   i;
    u_char   d;

    if (blen == 0) {
        return alen == 0;
    }

    d = (alen != blen);

    for (i = 0; i < alen; i++) {
        d |= a[i] ^ b[i % blen];
    }

    return d == 0;
}
