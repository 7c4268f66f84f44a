
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * Retention and login pacing, as RFC 2449 announces them in CAPA:
 *
 *   EXPIRE (6.7)       the least number of days a message stays on the
 *                      server: pop3_ext_expire, or the user's own value
 *                      (the user record's "expire", which AUTHINFO reads
 *                      with the rest of the login's fields).  Before
 *                      login CAPA must name the smallest value any user
 *                      may have, with "USER" when a user's may differ;
 *                      after login, the user's.  The module enforces
 *                      only EXPIRE 0: what the session retrieved goes at
 *                      its UPDATE, by COMMIT's forced entries.  Older
 *                      messages are removed by "pop3ext expunge" from
 *                      cron, so that logins stay read-only and as fast
 *                      as before; removing a message later than its days
 *                      is allowed, the number is a minimum.
 *
 *   LOGIN-DELAY (6.5)  the seconds between two logins of a maildrop,
 *                      pop3_ext_login_delay, enforced on every host by
 *                      the LOCK script (its "last" key) and answered
 *                      "-ERR [LOGIN-DELAY]" (8.1.1) without taking the
 *                      lock.  Nothing per user: both states say the same.
 */


#include "ngx_mail_pop3_ext_module.h"


static ngx_int_t ngx_p3x_retention_before_login(
    ngx_mail_pop3_ext_srv_conf_t *conf, ngx_uint_t *differs);
static ngx_int_t ngx_p3x_retention_effective(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_retention_expire_line(ngx_p3x_ctx_t *ctx,
    ngx_int_t days, ngx_uint_t user);


/*
 * "never" or 0 to P3X_EXPIRE_DAYS_MAX days: the days, NGX_P3X_EXPIRE_NEVER,
 * or NGX_ERROR.  One grammar for the directive and the user record.
 */

ngx_int_t
ngx_p3x_retention_parse(u_char *p, size_t len)
{
    ngx_int_t  days;

    if (len == sizeof(P3X_EXPIRE_NEVER) - 1
        && ngx_strncasecmp(p, (u_char *) P3X_EXPIRE_NEVER, len) == 0)
    {
        return NGX_P3X_EXPIRE_NEVER;
    }

    days = ngx_atoi(p, len);

    if (days == NGX_ERROR || days > P3X_EXPIRE_DAYS_MAX) {
        return NGX_ERROR;
    }

    return days;
}


/*
 * The user record's "expire", from AUTHINFO (NULL or nil: none).  A value
 * the grammar refuses is logged and left out: the server's applies, which
 * is what the operator promised everyone else.
 */

void
ngx_p3x_retention_user(ngx_p3x_ctx_t *ctx, redisReply *el)
{
    ngx_int_t    days, least;
    ngx_uint_t   differs;

    ctx->expire = NGX_CONF_UNSET;

    if (el == NULL || el->type != REDIS_REPLY_STRING || el->len == 0) {
        return;
    }

    days = ngx_p3x_retention_parse((u_char *) el->str, el->len);

    if (days == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                      "pop3_ext: user \"%V\" has an invalid \"expire\" "
                      "field \"%*s\", the server's retention applies",
                      &ctx->user, ngx_min(el->len, 32), el->str);
        return;
    }

    ctx->expire = days;

    /*
     * A client told before login that no user keeps mail for less would
     * be misled: a configuration to fix, so that CAPA says the truth
     */

    least = ngx_p3x_retention_before_login(ctx->conf, &differs);

    if (days < least) {
        ngx_log_error(NGX_LOG_WARN, ctx->connection->log, 0,
                      "pop3_ext: user \"%V\" keeps mail %i days, less than "
                      "the EXPIRE announced before login; set "
                      "\"pop3_ext_expire ... user_min=%i\"",
                      &ctx->user, days, days);
    }
}


/*
 * RFC 2449: EXPIRE, and LOGIN-DELAY when there is one.  Before login
 * EXPIRE names the least retention any user may have ("USER": a user's
 * own may be longer; 6.7 wants the smallest); after login the user's.
 */

void
ngx_p3x_retention_capa(ngx_p3x_ctx_t *ctx)
{
    ngx_int_t                      days;
    ngx_uint_t                     differs;
    ngx_mail_pop3_ext_srv_conf_t  *conf;

    conf = ctx->conf;

    if (ctx->state == ngx_p3x_state_auth) {
        days = ngx_p3x_retention_before_login(conf, &differs);
        ngx_p3x_retention_expire_line(ctx, days, differs);

    } else {
        ngx_p3x_retention_expire_line(ctx, ngx_p3x_retention_effective(ctx),
                                      0);
    }

    /*
     * whole seconds, rounded up: a client that waits what it is told is
     * never refused; one value for every user, so no "USER" (6.5)
     */

    if (conf->login_delay) {
        ngx_p3x_reply(ctx, "LOGIN-DELAY %M", (conf->login_delay + 999) / 1000);
    }
}


static void
ngx_p3x_retention_expire_line(ngx_p3x_ctx_t *ctx, ngx_int_t days,
    ngx_uint_t user)
{
    if (days == NGX_P3X_EXPIRE_NEVER) {
        ngx_p3x_reply(ctx, "EXPIRE NEVER%s", user ? " USER" : "");

    } else {
        ngx_p3x_reply(ctx, "EXPIRE %i%s", days, user ? " USER" : "");
    }
}


/*
 * The smallest retention a user may have: the server's, or user_min=
 * when users may keep mail for less.  *differs: a user's value may be
 * another one (anything but "never" everywhere).
 */

static ngx_int_t
ngx_p3x_retention_before_login(ngx_mail_pop3_ext_srv_conf_t *conf,
    ngx_uint_t *differs)
{
    *differs = !(conf->expire == NGX_P3X_EXPIRE_NEVER
                 && conf->expire_user_min == NGX_P3X_EXPIRE_NEVER);

    return ngx_min(conf->expire, conf->expire_user_min);
}


/* the logged-in user's retention */

static ngx_int_t
ngx_p3x_retention_effective(ngx_p3x_ctx_t *ctx)
{
    return (ctx->expire == NGX_CONF_UNSET) ? ctx->conf->expire : ctx->expire;
}


/*
 * At UPDATE with EXPIRE 0 (6.7: "an implicit DELE for each message which
 * was downloaded with RETR"): the messages retrieved whole and not marked
 * deleted, which COMMIT then removes as forced entries.  A TOP is not a
 * download, and RSET does not undo one.
 */

ngx_uint_t
ngx_p3x_retention_forced(ngx_p3x_ctx_t *ctx)
{
    ngx_uint_t  i, n;

    if (ngx_p3x_retention_effective(ctx) != 0) {
        return 0;
    }

    n = 0;

    for (i = 0; i < ctx->nmsgs; i++) {
        if (ctx->msgs[i].retrieved && !ctx->msgs[i].deleted) {
            n++;
        }
    }

    return n;
}


/*
 * LOCK refused the login, "LOGIN-DELAY <ms left>": the reply (8.1.1),
 * which says how long is left in whole seconds, rounded up.  The lock
 * was not taken.
 */

const char *
ngx_p3x_retention_delayed(ngx_p3x_ctx_t *ctx, redisReply *reply)
{
    u_char     *p;
    ngx_int_t   ms;

    static u_char  text[NGX_P3X_REPLY_ROOM];

    ms = 0;

    /* "LOGIN-DELAY " and the milliseconds */

    if ((size_t) reply->len > sizeof("LOGIN-DELAY")) {
        ms = ngx_atoi((u_char *) reply->str + sizeof("LOGIN-DELAY"),
                      reply->len - sizeof("LOGIN-DELAY"));
    }

    if (ms == NGX_ERROR || ms < 0) {
        ms = ctx->conf->login_delay;
    }

    ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                  "pop3_ext: login of user \"%V\" to \"%V\" within the "
                  "login delay, %i ms left", &ctx->user, &ctx->mailbox, ms);

    p = ngx_snprintf(text, sizeof(text) - 1,
                     "-ERR [LOGIN-DELAY] logged in too recently, try again "
                     "in %i seconds", (ms + 999) / 1000);
    *p = '\0';

    return (const char *) text;
}
