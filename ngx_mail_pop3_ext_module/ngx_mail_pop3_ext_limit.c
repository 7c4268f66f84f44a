
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * Abuse limits.  Their state lives in Redis, so that every host of a
 * cluster sees the same counts: an attacker spreading guesses over hosts
 * is slowed and blocked as one.
 *
 *   login attempts  a counter per client address and per user, counted
 *                   when an attempt starts, before its credentials are
 *                   checked, and taken back when it succeeds: however
 *                   many attempts run at once, and however soon their
 *                   connections close, an address gets no more checks
 *                   per pop3_ext_auth_block_time than
 *                   pop3_ext_auth_block_addr.  A failure is answered
 *                   after a delay that doubles with the address's count.
 *   connections     a counting semaphore per address and per user, with
 *                   slots that expire unless their session renews them
 */


#include "ngx_mail_pop3_ext_module.h"


#define NGX_P3X_LIMIT_KEY_MAX  (sizeof(P3X_FAIL_ADDR_PREFIX) + P3X_NAME_MAX  \
                                + NGX_SOCKADDR_STRLEN + 2)


static size_t ngx_p3x_limit_key(u_char *buf, const char *prefix,
    ngx_str_t *name);
static void ngx_p3x_limit_call(ngx_p3x_ctx_t *ctx, ngx_p3x_rcall_t *call,
    ngx_int_t script, ngx_p3x_redis_handler_pt handler);


/* 2 s, 4 s, 8 s... up to the maximum, for the n-th failure */

ngx_msec_t
ngx_p3x_limit_delay(ngx_p3x_ctx_t *ctx, ngx_int_t failures)
{
    ngx_msec_t  delay;

    delay = ctx->conf->auth_fail_delay;

    while (--failures > 0 && delay < ctx->conf->auth_fail_delay_max) {
        delay *= 2;
    }

    return ngx_min(delay, ctx->conf->auth_fail_delay_max);
}


/*
 * Counts this attempt against the client address; the handler gets the
 * count with it.  (The user's counter is counted by the AUTHINFO script,
 * which shares the user record's hash tag.)
 */

ngx_int_t
ngx_p3x_limit_attempt(ngx_p3x_ctx_t *ctx, ngx_p3x_redis_handler_pt handler)
{
    u_char           key[NGX_P3X_LIMIT_KEY_MAX], ttl[NGX_INT_T_LEN];
    size_t           keylen, argslen[1];
    const char      *keys[1], *args[1];
    ngx_p3x_rcall_t  call;

    args[0] = (const char *) ttl;
    argslen[0] = ngx_sprintf(ttl, "%M", ctx->conf->auth_block_time) - ttl;

    keys[0] = (const char *) key;
    keylen = ngx_p3x_limit_key(key, P3X_FAIL_ADDR_PREFIX,
                               &ctx->connection->addr_text);

    ngx_p3x_limit_call(ctx, &call, NGX_P3X_SCRIPT_FAIL, handler);
    call.tag = ctx->login_id;

    return ngx_p3x_redis_eval(&call, 1, keys, &keylen, 1, args, argslen);
}


/*
 * An attempt that succeeded (or was never checked) is taken back from
 * the address's count; with user, the user's failures are forgotten: who
 * logs in knows the password.  The address's other failures stay, so one
 * valid account buys an attacker no guesses.
 */

void
ngx_p3x_limit_refund(ngx_p3x_ctx_t *ctx, ngx_uint_t user)
{
    u_char           key[NGX_P3X_LIMIT_KEY_MAX];
    size_t           keylen, argvlen[2];
    const char      *keys[1], *argv[2];
    ngx_p3x_rcall_t  call;

    if (ctx->login_counted) {
        ctx->login_counted = 0;

        keys[0] = (const char *) key;
        keylen = ngx_p3x_limit_key(key, P3X_FAIL_ADDR_PREFIX,
                                   &ctx->connection->addr_text);

        ngx_p3x_limit_call(ctx, &call, NGX_P3X_SCRIPT_REFUND, NULL);

        (void) ngx_p3x_redis_eval(&call, 1, keys, &keylen, 0, NULL, NULL);
    }

    if (user && ctx->user_failures > 0) {
        argv[0] = "DEL";
        argvlen[0] = 3;
        argv[1] = (const char *) key;
        argvlen[1] = ngx_p3x_limit_key(key, P3X_FAIL_USER_PREFIX,
                                       &ctx->user);

        ngx_p3x_limit_call(ctx, &call, -1, NULL);
        call.idempotent = 1;
        call.key = 1;

        (void) ngx_p3x_redis_call(&call, 2, argv, argvlen);
    }
}


/* a live session renews its slots with its lock, every lock_ttl / 3 */

void
ngx_p3x_limit_conn_renew(ngx_p3x_ctx_t *ctx)
{
    if (ctx->conn_addr) {
        (void) ngx_p3x_limit_conn(ctx, 0, NULL);
    }

    if (ctx->conn_user) {
        (void) ngx_p3x_limit_conn(ctx, 1, NULL);
    }
}


/*
 * Gives back the user slot, and unless only_user the address slot, also
 * one still being taken: the ZREM goes over the same connection as the
 * request that takes it, so it runs after it.
 */

void
ngx_p3x_limit_conn_release(ngx_p3x_ctx_t *ctx, ngx_uint_t only_user)
{
    u_char           key[NGX_P3X_LIMIT_KEY_MAX];
    size_t           argvlen[3];
    const char      *argv[3];
    ngx_p3x_rcall_t  call;

    argv[0] = "ZREM";
    argvlen[0] = 4;
    argv[1] = (const char *) key;
    argv[2] = (const char *) ctx->session_id.data;
    argvlen[2] = ctx->session_id.len;

    ngx_p3x_limit_call(ctx, &call, -1, NULL);
    call.idempotent = 1;
    call.key = 1;
    call.timeout = 3 * ctx->conf->redis->timeout;

    if ((ctx->conn_addr || ctx->conn_addr_wait) && !only_user) {
        ctx->conn_addr = 0;
        ctx->conn_addr_wait = 0;
        argvlen[1] = ngx_p3x_limit_key(key, P3X_CONN_ADDR_PREFIX,
                                       &ctx->connection->addr_text);
        (void) ngx_p3x_redis_call(&call, 3, argv, argvlen);
    }

    if (ctx->conn_user || ctx->conn_user_wait) {
        ctx->conn_user = 0;
        ctx->conn_user_wait = 0;
        argvlen[1] = ngx_p3x_limit_key(key, P3X_CONN_USER_PREFIX,
                                       &ctx->user);
        (void) ngx_p3x_redis_call(&call, 3, argv, argvlen);
    }
}


/*
 * Takes a connection slot (with a handler) or renews one (without): of
 * the address, or of the user.  A renewal never takes a slot that was
 * given back in the meantime (see P3X_SCRIPT_CONN).
 */

ngx_int_t
ngx_p3x_limit_conn(ngx_p3x_ctx_t *ctx, ngx_uint_t user,
    ngx_p3x_redis_handler_pt handler)
{
    u_char           key[NGX_P3X_LIMIT_KEY_MAX], ttl[NGX_INT_T_LEN],
                     limit[NGX_INT_T_LEN];
    size_t           keylen, argslen[4];
    const char      *keys[1], *args[4];
    ngx_p3x_rcall_t  call;

    keys[0] = (const char *) key;

    if (user) {
        keylen = ngx_p3x_limit_key(key, P3X_CONN_USER_PREFIX, &ctx->user);
        argslen[2] = ngx_sprintf(limit, "%ui", ctx->conf->max_conn_per_user)
                     - limit;

    } else {
        keylen = ngx_p3x_limit_key(key, P3X_CONN_ADDR_PREFIX,
                                   &ctx->connection->addr_text);
        argslen[2] = ngx_sprintf(limit, "%ui", ctx->conf->max_conn_per_addr)
                     - limit;
    }

    args[0] = (const char *) ctx->session_id.data;
    argslen[0] = ctx->session_id.len;
    args[1] = (const char *) ttl;
    argslen[1] = ngx_sprintf(ttl, "%M", ctx->conf->lock_ttl) - ttl;
    args[2] = (const char *) limit;
    args[3] = "renew";
    argslen[3] = sizeof("renew") - 1;

    ngx_p3x_limit_call(ctx, &call, NGX_P3X_SCRIPT_CONN, handler);
    call.idempotent = 1;

    if (handler) {
        call.tag = user ? ctx->login_id : 0;
    }

    if (ngx_p3x_redis_eval(&call, 1, keys, &keylen, handler ? 3 : 4, args,
                           argslen)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (handler) {
        if (user) {
            ctx->conn_user_wait = 1;

        } else {
            ctx->conn_addr_wait = 1;
        }
    }

    return NGX_OK;
}


/* requests nobody waits for belong to no session: they outlive it */

static void
ngx_p3x_limit_call(ngx_p3x_ctx_t *ctx, ngx_p3x_rcall_t *call,
    ngx_int_t script, ngx_p3x_redis_handler_pt handler)
{
    ngx_p3x_call_init(ctx, call, script, handler);

    if (handler == NULL) {
        call->owner = NULL;
        call->data = NULL;
    }
}


static size_t
ngx_p3x_limit_key(u_char *buf, const char *prefix, ngx_str_t *name)
{
    u_char  *p;
    size_t   len;

    len = ngx_min(name->len, P3X_NAME_MAX + NGX_SOCKADDR_STRLEN);

    p = ngx_cpymem(buf, prefix, ngx_strlen(prefix));
    p = ngx_cpymem(p, name->data, len);
    p = ngx_cpymem(p, P3X_TAG_CLOSE, sizeof(P3X_TAG_CLOSE) - 1);

    return p - buf;
}
