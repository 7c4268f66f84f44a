
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * The AUTHORIZATION state.  Every mechanism (USER/PASS, APOP, SASL
 * PLAIN, LOGIN, CRAM-MD5, EXTERNAL) ends in one login pipeline:
 *
 *   1. the attempt counted against the address and (if it exists) the
 *      user, and the user record read: two requests at once
 *   2. a refusal without any check when either count is over its block
 *   3. the check of the credentials in the thread pool
 *   4. on failure (or refusal): the -ERR sent after a delay that grows
 *      with the address's count, measured from the start of the attempt,
 *      so that the reply time tells nothing about the user or the hash
 *   5. on success: the attempt taken back from the address's count and
 *      the user's failures forgotten, a user slot taken if limited, and
 *      the maildrop locked (TRANSACTION)
 *
 * Counting before checking bounds the checks per address however the
 * attempts are timed.  Each attempt has an id (ctx->login_id) that tags
 * its Redis requests: an attempt that ends early cancels what it still
 * has out, so no late reply can answer twice or leave the session busy.
 * The session stays busy from 1 to the reply, so pipelined commands wait.
 */


#include "ngx_mail_pop3_ext_module.h"

#include <openssl/rand.h>


static ngx_int_t ngx_p3x_login_refused(ngx_p3x_ctx_t *ctx, ngx_uint_t method);
static ngx_int_t ngx_p3x_login_salt(ngx_p3x_ctx_t *ctx, ngx_str_t *salt);
static void ngx_p3x_login_greet(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_login_addr_slot(void *data, redisReply *reply,
    ngx_uint_t status);
static ngx_int_t ngx_p3x_login_printable(ngx_str_t *name);
static ngx_int_t ngx_p3x_login_set_user(ngx_p3x_ctx_t *ctx, ngx_str_t *name);
static ngx_int_t ngx_p3x_login_set_password(ngx_p3x_ctx_t *ctx,
    ngx_str_t *pw);
static void ngx_p3x_login_start(ngx_p3x_ctx_t *ctx,
    ngx_p3x_auth_method_e method);
static void ngx_p3x_login_info(void *data, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_login_addr(void *data, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_login_check(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_login_verified(ngx_p3x_ctx_t *ctx, ngx_int_t rc);
static void ngx_p3x_login_fail(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_login_delayed(ngx_event_t *ev);
static void ngx_p3x_login_user_slot(void *data, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_login_lock(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_login_locked(void *data, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_login_index(void *data, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_login_unlock(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_login_done(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_login_abort(ngx_p3x_ctx_t *ctx, const char *reply);
static ngx_int_t ngx_p3x_login_set_mailbox(ngx_p3x_ctx_t *ctx,
    ngx_str_t *mailbox);
static void ngx_p3x_sasl_plain_response(ngx_p3x_ctx_t *ctx, ngx_str_t *msg);
static void ngx_p3x_sasl_external_response(ngx_p3x_ctx_t *ctx,
    ngx_str_t *msg);
static void ngx_p3x_sasl_challenge(ngx_p3x_ctx_t *ctx, ngx_str_t *text);
static void ngx_p3x_refresh_handler(ngx_event_t *ev);
static void ngx_p3x_refreshed(void *data, redisReply *reply,
    ngx_uint_t status);


/* a valid SHA512-CRYPT hash of a random string: unknown users cost the
 * same time as known ones, so timing does not tell which names exist */
static ngx_str_t  ngx_p3x_dummy_secret = ngx_string(
    "{SHA512-CRYPT}$6$p3xdummysalt$8Ewzs4Jg1QqTl0gkAqbeVl8wtwiWKpuMu0CSDy"
    "Dq0xhC5GGJ9aD1eX7.pXRK1w3q2yzm4R3eSVjcL.J7ZQO2e/");


typedef struct {
    ngx_str_t    name;
    ngx_uint_t   method;
} ngx_p3x_mech_t;


static ngx_p3x_mech_t  ngx_p3x_mechs[] = {
    { ngx_string("PLAIN"), NGX_P3X_AUTH_PLAIN },
    { ngx_string("LOGIN"), NGX_P3X_AUTH_LOGIN },
    { ngx_string("CRAM-MD5"), NGX_P3X_AUTH_CRAM_MD5 },
    { ngx_string("EXTERNAL"), NGX_P3X_AUTH_EXTERNAL },
    { ngx_null_string, 0 }
};


/*
 * Called once per connection, before the greeting: the session id for
 * the connection limits, the APOP timestamp, and the address slot.
 */

ngx_int_t
ngx_p3x_login_init(ngx_p3x_ctx_t *ctx)
{
    ngx_connection_t  *c;

    c = ctx->connection;

    /* the random part keeps containers with equal host names apart */

    ctx->session_id.data = ngx_pnalloc(c->pool, ngx_cycle->hostname.len
                                                + 3 * NGX_INT64_LEN + 3);
    if (ctx->session_id.data == NULL) {
        return NGX_ERROR;
    }

    ctx->session_id.len = ngx_sprintf(ctx->session_id.data, "%V:%P:%uA:%08xD",
                                      &ngx_cycle->hostname, ngx_pid,
                                      c->number, (uint32_t) ngx_random())
                          - ctx->session_id.data;

    ctx->ev_delay.handler = ngx_p3x_login_delayed;
    ctx->ev_delay.data = ctx;
    ctx->ev_delay.log = c->log;

    if ((ctx->conf->auth_methods & NGX_P3X_AUTH_APOP)
        && ngx_p3x_login_salt(ctx, &ctx->salt) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->conf->max_conn_per_addr
        && ngx_p3x_limit_conn(ctx, 0, ngx_p3x_login_addr_slot) == NGX_OK)
    {
        ctx->busy = 1;
        return NGX_OK;
    }

    /* no limit, or Redis is down: the greeting goes out at once */

    ngx_p3x_login_greet(ctx);

    return NGX_OK;
}


/* "<pid.connection.random@host>": unique, as APOP and CRAM-MD5 need */

static ngx_int_t
ngx_p3x_login_salt(ngx_p3x_ctx_t *ctx, ngx_str_t *salt)
{
    ngx_mail_core_srv_conf_t  *cscf;

    cscf = ngx_mail_get_module_srv_conf(ctx->session, ngx_mail_core_module);

    salt->data = ngx_pnalloc(ctx->connection->pool,
                             3 * NGX_INT64_LEN + cscf->server_name.len + 8);
    if (salt->data == NULL) {
        return NGX_ERROR;
    }

    salt->len = ngx_sprintf(salt->data, "<%P.%uA.%ul.%M@%V>", ngx_pid,
                            ctx->connection->number, (u_long) ngx_random(),
                            ngx_current_msec, &cscf->server_name)
                - salt->data;

    return NGX_OK;
}


static void
ngx_p3x_login_greet(ngx_p3x_ctx_t *ctx)
{
    if (ctx->salt.len) {
        ngx_p3x_reply(ctx, "+OK POP3 ready %V", &ctx->salt);

    } else {
        ngx_p3x_out_literal(ctx, "+OK POP3 ready" CRLF);
    }
}


static void
ngx_p3x_login_addr_slot(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_ctx_t *ctx = data;

    ctx->busy = 0;
    ngx_p3x_wake(ctx);

    if (status == NGX_P3X_REDIS_OK && reply->type == REDIS_REPLY_INTEGER) {
        ctx->conn_addr_wait = 0;

        if (reply->integer == 0) {
            ngx_log_error(NGX_LOG_NOTICE, ctx->connection->log, 0,
                          "pop3_ext: too many connections from this "
                          "address");
            ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] too many connections "
                                "from your address" CRLF);
            ctx->end_reason = "too many connections";
            ctx->quit = 1;
            return;
        }

        ctx->conn_addr = 1;
        ngx_p3x_refresh_start(ctx);

    } else if (status == NGX_P3X_REDIS_NOTRUN) {
        ctx->conn_addr_wait = 0;
    }

    /* Redis unavailable: the limit cannot be kept, the client is served */

    ngx_p3x_login_greet(ctx);
}


/* the mechanisms this channel may use now */

ngx_uint_t
ngx_p3x_login_methods(ngx_p3x_ctx_t *ctx)
{
    ngx_uint_t  methods;

    if (ngx_p3x_ssl_starttls_only(ctx->session)) {
        return 0;
    }

    methods = ctx->conf->auth_methods;

    if (ctx->conf->plaintext != NGX_P3X_PLAINTEXT_ALWAYS
        && !ngx_p3x_ssl_secure(ctx))
    {
        methods &= ~NGX_P3X_AUTH_PLAINTEXT;
    }

    if (!ngx_p3x_ssl_on(ctx)) {
        methods &= ~NGX_P3X_AUTH_EXTERNAL;
    }

    if (ctx->salt.len == 0) {
        methods &= ~NGX_P3X_AUTH_APOP;
    }

    return methods;
}


/* answers for a mechanism not usable now, and says why */

static ngx_int_t
ngx_p3x_login_refused(ngx_p3x_ctx_t *ctx, ngx_uint_t method)
{
    if (ngx_p3x_login_methods(ctx) & method) {
        return 0;
    }

    if (ngx_p3x_ssl_starttls_only(ctx->session)) {
        ngx_p3x_error(ctx, "-ERR [AUTH] must issue a STLS command first");

    } else if ((ctx->conf->auth_methods & method)
               && (method & NGX_P3X_AUTH_PLAINTEXT))
    {
        ngx_p3x_error(ctx, "-ERR [AUTH] plaintext authentication "
                           "disallowed on non-secure connections");

    } else {
        ngx_p3x_error(ctx, "-ERR authentication method not supported");
    }

    return 1;
}


void
ngx_p3x_user(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    if (ngx_p3x_login_refused(ctx, NGX_P3X_AUTH_USER)) {
        return;
    }

    if (cmd->nargs != 1) {
        ngx_p3x_error(ctx, "-ERR USER takes one argument: a user name");
        return;
    }

    /*
     * Any name is taken here and refused at PASS, so that the replies do
     * not tell which names exist.
     */

    if (ngx_p3x_login_set_user(ctx, &cmd->args[0]) != NGX_OK) {
        ngx_p3x_error(ctx, "-ERR user name too long");
        return;
    }

    ctx->user_ok = 1;

    ngx_p3x_out_literal(ctx, "+OK" CRLF);
}


void
ngx_p3x_pass(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    if (ngx_p3x_login_refused(ctx, NGX_P3X_AUTH_USER)) {
        return;
    }

    if (!ctx->user_ok) {
        ngx_p3x_error(ctx, "-ERR give USER first");
        return;
    }

    if (cmd->nargs != 1 || cmd->args[0].len == 0) {
        ngx_p3x_error(ctx, "-ERR PASS takes one argument: the password");
        return;
    }

    ctx->user_ok = 0;

    if (ngx_p3x_login_set_password(ctx, &cmd->args[0]) != NGX_OK) {
        ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] out of memory" CRLF);
        return;
    }

    ngx_p3x_login_start(ctx, ngx_p3x_auth_password);
}


void
ngx_p3x_apop(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    if (ngx_p3x_login_refused(ctx, NGX_P3X_AUTH_APOP)) {
        return;
    }

    if (cmd->nargs != 2 || cmd->args[1].len != 32) {
        ngx_p3x_error(ctx, "-ERR APOP takes a name and an MD5 digest");
        return;
    }

    if (ngx_p3x_login_set_user(ctx, &cmd->args[0]) != NGX_OK
        || ngx_p3x_login_set_password(ctx, &cmd->args[1]) != NGX_OK)
    {
        ngx_p3x_error(ctx, "-ERR [AUTH] invalid user name");
        return;
    }

    ctx->challenge = ctx->salt;

    ngx_p3x_login_start(ctx, ngx_p3x_auth_apop);
}


void
ngx_p3x_auth(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    u_char          *p;
    ngx_str_t        line, salt;
    ngx_uint_t       methods;
    ngx_p3x_mech_t  *m;

    methods = ngx_p3x_login_methods(ctx);

    if (cmd->nargs == 0) {

        /* the mechanism list of pre-RFC 5034 clients */

        ngx_p3x_out_literal(ctx, "+OK" CRLF);

        for (m = ngx_p3x_mechs; m->name.len; m++) {
            if (methods & m->method) {
                ngx_p3x_reply(ctx, "%V", &m->name);
            }
        }

        ngx_p3x_out_literal(ctx, "." CRLF);
        return;
    }

    for (m = ngx_p3x_mechs; m->name.len; m++) {
        if (m->name.len == cmd->args[0].len
            && ngx_strncasecmp(m->name.data, cmd->args[0].data,
                               m->name.len) == 0)
        {
            break;
        }
    }

    if (m->name.len == 0) {
        ngx_p3x_error(ctx, "-ERR unsupported authentication mechanism");
        return;
    }

    if (ngx_p3x_login_refused(ctx, m->method)) {
        return;
    }

    if (cmd->nargs > 2
        || (cmd->nargs == 2 && m->method == NGX_P3X_AUTH_CRAM_MD5))
    {
        ngx_p3x_error(ctx, "-ERR too many arguments");
        return;
    }

    switch (m->method) {

    case NGX_P3X_AUTH_PLAIN:
        ctx->sasl = ngx_p3x_sasl_wait_plain;
        break;

    case NGX_P3X_AUTH_LOGIN:
        ctx->sasl = ngx_p3x_sasl_wait_login_user;
        break;

    case NGX_P3X_AUTH_EXTERNAL:
        ctx->sasl = ngx_p3x_sasl_wait_external;
        break;

    default: /* NGX_P3X_AUTH_CRAM_MD5 */

        if (ngx_p3x_login_salt(ctx, &salt) != NGX_OK) {
            ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] out of memory" CRLF);
            return;
        }

        ctx->challenge = salt;
        ctx->sasl = ngx_p3x_sasl_wait_cram_md5;
        ngx_p3x_sasl_challenge(ctx, &salt);
        return;
    }

    if (cmd->nargs == 2) {
        /* an initial response (RFC 5034, 4) */
        ngx_p3x_sasl_line(ctx, &cmd->args[1]);
        return;
    }

    p = (u_char *) ((m->method == NGX_P3X_AUTH_LOGIN) ? "Username:" : "");
    line.data = p;
    line.len = ngx_strlen(p);

    ngx_p3x_sasl_challenge(ctx, &line);
}


/*
 * "+ " and the challenge in base64, straight into the output buffer: a
 * CRAM-MD5 challenge holds the server name, which may be 253 octets.
 */

static void
ngx_p3x_sasl_challenge(ngx_p3x_ctx_t *ctx, ngx_str_t *text)
{
    ngx_str_t   b64;
    ngx_buf_t  *b;

    b = ctx->out;

    if (ngx_base64_encoded_length(text->len) + 4
        > ngx_min(ngx_p3x_out_room(ctx), NGX_P3X_REPLY_ROOM))
    {
        ctx->sasl = ngx_p3x_sasl_wait_none;
        ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] challenge too long" CRLF);
        return;
    }

    b->last = ngx_cpymem(b->last, "+ ", 2);

    b64.data = b->last;
    ngx_encode_base64(&b64, text);

    b->last += b64.len;
    *b->last++ = CR;
    *b->last++ = LF;
}


/* a line of a SASL exchange: a response to our last challenge */

void
ngx_p3x_sasl_line(ngx_p3x_ctx_t *ctx, ngx_str_t *line)
{
    u_char         *buf;
    ngx_int_t       rc;
    ngx_str_t       msg, user, digest, text;
    ngx_p3x_sasl_e  sasl;

    sasl = ctx->sasl;
    ctx->sasl = ngx_p3x_sasl_wait_none;

    if (line->len > ctx->conf->sasl_line_max) {
        ngx_p3x_error(ctx, "-ERR [AUTH] SASL response too long");
        return;
    }

    buf = ngx_alloc(ngx_p3x_base64_decoded_len(line->len) + 1,
                    ctx->connection->log);
    if (buf == NULL) {
        ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] out of memory" CRLF);
        return;
    }

    rc = ngx_p3x_sasl_response(line, buf, &msg);

    if (rc == NGX_DECLINED) {
        ngx_p3x_error(ctx, "-ERR [AUTH] authentication cancelled");
        goto done;
    }

    if (rc != NGX_OK) {
        ngx_p3x_error(ctx, "-ERR [AUTH] invalid base64 in SASL response");
        goto done;
    }

    switch (sasl) {

    case ngx_p3x_sasl_wait_plain:
        ngx_p3x_sasl_plain_response(ctx, &msg);
        break;

    case ngx_p3x_sasl_wait_login_user:

        if (msg.len == 0 || !ngx_p3x_sasl_no_nul(&msg)
            || ngx_p3x_login_set_user(ctx, &msg) != NGX_OK)
        {
            ngx_p3x_error(ctx, "-ERR [AUTH] invalid user name");
            break;
        }

        ngx_str_set(&text, "Password:");
        ctx->sasl = ngx_p3x_sasl_wait_login_pass;
        ngx_p3x_sasl_challenge(ctx, &text);
        break;

    case ngx_p3x_sasl_wait_login_pass:

        if (msg.len == 0 || !ngx_p3x_sasl_no_nul(&msg)) {
            ngx_p3x_error(ctx, "-ERR [AUTH] invalid password");
            break;
        }

        if (ngx_p3x_login_set_password(ctx, &msg) != NGX_OK) {
            ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] out of memory" CRLF);
            break;
        }

        ngx_p3x_login_start(ctx, ngx_p3x_auth_password);
        break;

    case ngx_p3x_sasl_wait_cram_md5:

        if (ngx_p3x_sasl_cram_md5(&msg, &user, &digest) != NGX_OK
            || ngx_p3x_login_set_user(ctx, &user) != NGX_OK
            || ngx_p3x_login_set_password(ctx, &digest) != NGX_OK)
        {
            ngx_p3x_error(ctx, "-ERR [AUTH] invalid CRAM-MD5 response");
            break;
        }

        ngx_p3x_login_start(ctx, ngx_p3x_auth_cram_md5);
        break;

    case ngx_p3x_sasl_wait_external:
        ngx_p3x_sasl_external_response(ctx, &msg);
        break;

    default:
        break;
    }

done:

    ngx_explicit_memzero(buf, ngx_p3x_base64_decoded_len(line->len));
    ngx_free(buf);
    ngx_explicit_memzero(line->data, line->len);
}


/* RFC 4616: no proxy authorization, so authzid is empty or the user */

static void
ngx_p3x_sasl_plain_response(ngx_p3x_ctx_t *ctx, ngx_str_t *msg)
{
    ngx_str_t  authzid, authcid, passwd;

    if (ngx_p3x_sasl_plain(msg, &authzid, &authcid, &passwd) != NGX_OK) {
        ngx_p3x_error(ctx, "-ERR [AUTH] invalid PLAIN response");
        return;
    }

    if (authzid.len
        && (authzid.len != authcid.len
            || ngx_strncmp(authzid.data, authcid.data, authcid.len) != 0))
    {
        ngx_p3x_error(ctx, "-ERR [AUTH] proxy authorization not permitted");
        return;
    }

    if (ngx_p3x_login_set_user(ctx, &authcid) != NGX_OK) {
        ngx_p3x_error(ctx, "-ERR [AUTH] invalid user name");
        return;
    }

    if (ngx_p3x_login_set_password(ctx, &passwd) != NGX_OK) {
        ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] out of memory" CRLF);
        return;
    }

    ngx_p3x_login_start(ctx, ngx_p3x_auth_password);
}


/* the certificate names the user; an authzid may only repeat it */

static void
ngx_p3x_sasl_external_response(ngx_p3x_ctx_t *ctx, ngx_str_t *msg)
{
    ngx_str_t  id;

    if (ngx_p3x_ssl_identity(ctx, &id) != NGX_OK) {
        ngx_p3x_error(ctx, "-ERR [AUTH] no verified client certificate");
        return;
    }

    /* both names are checked before either may reach the log */

    if (!ngx_p3x_login_printable(msg)
        || ngx_p3x_login_set_user(ctx, &id) != NGX_OK)
    {
        ngx_p3x_error(ctx, "-ERR [AUTH] invalid user name");
        return;
    }

    if (msg->len
        && (msg->len != id.len
            || ngx_strncmp(msg->data, id.data, id.len) != 0))
    {
        ngx_log_error(NGX_LOG_NOTICE, ctx->connection->log, 0,
                      "pop3_ext: EXTERNAL authorization identity \"%V\" "
                      "is not the certificate's \"%V\"", msg, &id);
        ngx_p3x_error(ctx, "-ERR [AUTH] authorization identity refused");
        return;
    }

    ctx->password.len = 0;

    ngx_p3x_login_start(ctx, ngx_p3x_auth_external);
}


/*
 * A name from SASL is decoded base64 and may hold any octet: a line end
 * in it would forge log lines (and fail2ban bans).
 */

static ngx_int_t
ngx_p3x_login_printable(ngx_str_t *name)
{
    size_t  i;

    if (name->len > P3X_NAME_MAX) {
        return 0;
    }

    for (i = 0; i < name->len; i++) {
        if (name->data[i] < 0x20 || name->data[i] == 0x7f) {
            return 0;
        }
    }

    return 1;
}


static ngx_int_t
ngx_p3x_login_set_user(ngx_p3x_ctx_t *ctx, ngx_str_t *name)
{
    if (!ngx_p3x_login_printable(name)) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->user.data, name->data, name->len);
    ctx->user.len = name->len;

    ctx->session->login = ctx->user;

    return NGX_OK;
}


/* the password, or the digest of APOP and CRAM-MD5; wiped once used */

static ngx_int_t
ngx_p3x_login_set_password(ngx_p3x_ctx_t *ctx, ngx_str_t *pw)
{
    size_t  size;

    size = ngx_max(ctx->conf->line_max, ctx->conf->sasl_line_max);

    if (ctx->password.data == NULL) {
        ctx->password.data = ngx_alloc(size, ctx->connection->log);
        if (ctx->password.data == NULL) {
            return NGX_ERROR;
        }
    }

    ctx->password.len = ngx_min(pw->len, size);
    ngx_memcpy(ctx->password.data, pw->data, ctx->password.len);

    /* the input buffer held it: wipe it there */
    ngx_explicit_memzero(pw->data, pw->len);

    return NGX_OK;
}


/*
 * The password and the stored secret (for {PLAIN}, the password itself)
 * are wiped and given back: they are needed only until the check ran.
 */

void
ngx_p3x_login_forget_password(ngx_p3x_ctx_t *ctx)
{
    if (ctx->password.data) {
        ngx_explicit_memzero(ctx->password.data, ctx->password.len);
        ngx_free(ctx->password.data);
        ngx_str_null(&ctx->password);
    }

    if (ctx->secret.data) {
        ngx_explicit_memzero(ctx->secret.data, ctx->secret.len);
        ngx_free(ctx->secret.data);
        ngx_str_null(&ctx->secret);
    }
}


static void
ngx_p3x_login_start(ngx_p3x_ctx_t *ctx, ngx_p3x_auth_method_e method)
{
    ctx->auth_method = method;
    ctx->auth_attempts++;
    ctx->login_id++;
    ctx->user_known = 0;
    ctx->login_failed = 0;
    ctx->login_blocked = 0;
    ctx->login_counted = 0;
    ctx->addr_failures = 0;
    ctx->user_failures = 0;
    ctx->login_pending = 0;
    ctx->login_start = ngx_current_msec;

    ctx->connection->log->action = "authenticating";

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "pop3_ext: login attempt %ui of \"%V\"",
                   ctx->login_id, &ctx->user);

    if (ngx_p3x_limit_attempt(ctx, ngx_p3x_login_addr) != NGX_OK) {
        ngx_p3x_login_abort(ctx, "-ERR [SYS/TEMP] mail store unavailable");
        return;
    }

    ctx->login_pending++;
    ctx->busy = 1;

    /* a name that breaks the model has no record: it fails like any */

    if (!p3x_valid_name(ctx->user.data, ctx->user.len)) {
        return;
    }

    if (ngx_p3x_store_authinfo(ctx, ngx_p3x_login_info) != NGX_OK) {
        /* the address request is out: its reply finds login_failed */
        ctx->login_failed = 1;
        return;
    }

    ctx->login_pending++;
}


/* { secret, mailbox, disabled, failures, expire } */

static void
ngx_p3x_login_info(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_ctx_t *ctx = data;

    ngx_str_t    s;
    redisReply  *el;

    if (status != NGX_P3X_REDIS_OK || reply->type != REDIS_REPLY_ARRAY
        || reply->elements < 4)
    {
        if (status == NGX_P3X_REDIS_OK && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                          "pop3_ext: user lookup: %*s",
                          reply->len, reply->str);
        }

        ctx->login_failed = 1;
        goto done;
    }

    el = reply->element[0];

    if (el->type == REDIS_REPLY_STRING && el->len > 0 && !ctx->secret.data) {
        ctx->secret.data = ngx_alloc(el->len, ctx->connection->log);
        if (ctx->secret.data == NULL) {
            ctx->login_failed = 1;
            goto done;
        }

        ngx_memcpy(ctx->secret.data, el->str, el->len);
        ctx->secret.len = el->len;
        ctx->user_known = 1;
    }

    el = reply->element[2];

    if (el->type == REDIS_REPLY_STRING && el->len > 0
        && !(el->len == 1 && el->str[0] == '0'))
    {
        ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                      "pop3_ext: user \"%V\" is disabled", &ctx->user);
        ctx->user_known = 0;
    }

    el = reply->element[1];

    if (el->type == REDIS_REPLY_STRING && el->len > 0) {
        s.data = (u_char *) el->str;
        s.len = el->len;

    } else {
        s = ctx->user;
    }

    if (ctx->user_known && ngx_p3x_login_set_mailbox(ctx, &s) != NGX_OK) {
        ctx->user_known = 0;
    }

    el = reply->element[3];

    if (el->type == REDIS_REPLY_INTEGER) {
        ctx->user_failures = (ngx_int_t) el->integer;

    } else if (el->type == REDIS_REPLY_STRING) {
        ctx->user_failures = ngx_atoi((u_char *) el->str, el->len);
    }

    ngx_p3x_retention_user(ctx, reply->elements > 4 ? reply->element[4]
                                                    : NULL);

done:

    if (--ctx->login_pending == 0) {
        ngx_p3x_login_check(ctx);
    }
}


/* the address's count of attempts, this one in it */

static void
ngx_p3x_login_addr(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_ctx_t *ctx = data;

    if (status == NGX_P3X_REDIS_OK && reply->type == REDIS_REPLY_INTEGER) {
        ctx->addr_failures = (ngx_int_t) reply->integer;
        ctx->login_counted = 1;

    } else {
        ctx->login_failed = 1;
    }

    if (--ctx->login_pending == 0) {
        ngx_p3x_login_check(ctx);
    }
}


static void
ngx_p3x_login_check(ngx_p3x_ctx_t *ctx)
{
    ngx_str_t                     secret;
    ngx_mail_pop3_ext_srv_conf_t  *conf;

    conf = ctx->conf;

    if (ctx->login_failed) {
        /* never checked: it does not count */
        ngx_p3x_limit_refund(ctx, 0);
        ngx_p3x_login_abort(ctx, "-ERR [SYS/TEMP] mail store unavailable");
        return;
    }

    if ((conf->auth_block_addr
         && ctx->addr_failures > (ngx_int_t) conf->auth_block_addr)
        || (conf->auth_block_user
            && ctx->user_failures > (ngx_int_t) conf->auth_block_user))
    {
        ctx->login_blocked = 1;
        ngx_p3x_login_fail(ctx);
        return;
    }

    if (ctx->auth_method == ngx_p3x_auth_external) {
        ngx_p3x_login_verified(ctx, ctx->user_known ? NGX_OK : NGX_DECLINED);
        return;
    }

    secret = ctx->user_known ? ctx->secret : ngx_p3x_dummy_secret;

    if (ngx_p3x_auth_verify(ctx, &secret, ctx->auth_method, &ctx->password,
                            &ctx->challenge, ngx_p3x_login_verified)
        != NGX_OK)
    {
        ngx_p3x_limit_refund(ctx, 0);
        ngx_p3x_login_abort(ctx, "-ERR [SYS/TEMP] cannot verify now");
    }
}


static void
ngx_p3x_login_verified(ngx_p3x_ctx_t *ctx, ngx_int_t rc)
{
    static const char  *methods[] = { "password", "APOP", "CRAM-MD5",
                                      "EXTERNAL" };

    ngx_p3x_login_forget_password(ctx);

    if (rc == NGX_ERROR && ctx->user_known) {
        ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                      "pop3_ext: the stored secret of user \"%V\" cannot "
                      "serve %s authentication (unknown scheme, or one "
                      "the method cannot use)",
                      &ctx->user, methods[ctx->auth_method]);
    }

    if (rc != NGX_OK || !ctx->user_known) {
        ngx_p3x_login_fail(ctx);
        return;
    }

    /* a good login costs its address nothing */
    ngx_p3x_limit_refund(ctx, 1);

    if (ctx->conf->max_conn_per_user
        && ngx_p3x_limit_conn(ctx, 1, ngx_p3x_login_user_slot) == NGX_OK)
    {
        return;
    }

    ngx_p3x_login_lock(ctx);
}


/*
 * A failed or refused attempt, counted already: logged, and answered
 * once the delay for the address's count has passed since it began.
 */

static void
ngx_p3x_login_fail(ngx_p3x_ctx_t *ctx)
{
    ngx_msec_t  delay, spent;

    static const char  *methods[] = { "USER/PASS or PLAIN or LOGIN", "APOP",
                                      "CRAM-MD5", "EXTERNAL" };

    if (ctx->login_blocked) {
        ngx_log_error(NGX_LOG_WARN, ctx->connection->log, 0,
                      "pop3_ext: login of user \"%V\" blocked after %i "
                      "failures from the address, %i of the user",
                      &ctx->user, ctx->addr_failures - 1,
                      ngx_max(ctx->user_failures - 1, 0));

    } else {
        ngx_log_error(NGX_LOG_NOTICE, ctx->connection->log, 0,
                      "pop3_ext: authentication failed for user \"%V\" (%s)",
                      &ctx->user, methods[ctx->auth_method]);
    }

    ctx->connection->log->action = "in auth state";

    ngx_p3x_login_forget_password(ctx);

    ngx_p3x_metrics_login(ctx, ctx->login_blocked ? NGX_P3X_LOGIN_BLOCKED
                                                  : NGX_P3X_LOGIN_BAD);

    delay = ngx_p3x_limit_delay(ctx, ngx_max(ctx->addr_failures, 1));
    spent = ngx_current_msec - ctx->login_start;

    ngx_add_timer(&ctx->ev_delay, delay > spent ? delay - spent : 1);
}


static void
ngx_p3x_login_delayed(ngx_event_t *ev)
{
    ngx_p3x_ctx_t  *ctx = ev->data;

    ctx->busy = 0;
    ngx_p3x_wake(ctx);

    if (ctx->login_blocked) {
        ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] too many failed logins, "
                                 "try again later" CRLF);

    } else {
        ngx_p3x_error(ctx, "-ERR [AUTH] invalid user name or password");
    }

    if (ctx->conf->max_auth_attempts
        && ctx->auth_attempts >= ctx->conf->max_auth_attempts)
    {
        ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                      "pop3_ext: too many authentication attempts");
        ctx->end_reason = "too many authentication attempts";
        ctx->quit = 1;
    }
}


static void
ngx_p3x_login_user_slot(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_ctx_t *ctx = data;

    if (status == NGX_P3X_REDIS_OK && reply->type == REDIS_REPLY_INTEGER) {
        ctx->conn_user_wait = 0;

        if (reply->integer == 0) {
            ngx_log_error(NGX_LOG_NOTICE, ctx->connection->log, 0,
                          "pop3_ext: too many sessions of user \"%V\"",
                          &ctx->user);
            ngx_p3x_login_abort(ctx, "-ERR [SYS/TEMP] too many sessions of "
                                     "this user");
            return;
        }

        ctx->conn_user = 1;
        ngx_p3x_refresh_start(ctx);

    } else if (status == NGX_P3X_REDIS_NOTRUN) {
        ctx->conn_user_wait = 0;
    }

    ngx_p3x_login_lock(ctx);
}


static void
ngx_p3x_login_lock(ngx_p3x_ctx_t *ctx)
{
    u_char  rnd[P3X_TOKEN_LEN / 2];

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_p3x_login_abort(ctx, "-ERR [SYS/TEMP] internal error");
        return;
    }

    ngx_hex_dump(ctx->token, rnd, sizeof(rnd));

    ctx->connection->log->action = "locking maildrop";

    if (ngx_p3x_store_lock(ctx, ngx_p3x_login_locked) != NGX_OK) {
        ngx_p3x_login_abort(ctx, "-ERR [SYS/TEMP] mail store unavailable");
        return;
    }

    ctx->locking = 1;
}


static void
ngx_p3x_login_locked(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_ctx_t *ctx = data;

    ngx_int_t          rc;
    ngx_connection_t  *c;

    c = ctx->connection;
    ctx->locking = 0;

    if (status == NGX_P3X_REDIS_OK && ngx_p3x_store_error(reply, "IN-USE")) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "pop3_ext: maildrop \"%V\" is in use", &ctx->mailbox);

        ngx_p3x_login_abort(ctx, "-ERR [IN-USE] maildrop is locked by "
                                 "another session");
        return;
    }

    /* RFC 2449 LOGIN-DELAY: the last login of the maildrop was too recent */

    if (status == NGX_P3X_REDIS_OK
        && ngx_p3x_store_error(reply, "LOGIN-DELAY"))
    {
        ngx_p3x_login_abort(ctx, ngx_p3x_retention_delayed(ctx, reply));
        return;
    }

    if (status != NGX_P3X_REDIS_OK || reply->type != REDIS_REPLY_ARRAY) {
        if (status == NGX_P3X_REDIS_OK) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "pop3_ext: locking \"%V\": unexpected reply",
                          &ctx->mailbox);

        } else if (status == NGX_P3X_REDIS_UNKNOWN) {
            /* Redis may still run the script: void it */
            ngx_p3x_store_release(ctx);
        }

        ngx_p3x_login_abort(ctx, "-ERR [SYS/TEMP] mail store unavailable");
        return;
    }

    ctx->locked = 1;
    ctx->login_pending = 0;

    rc = ngx_p3x_store_index_begin(ctx, reply);

    if (rc == NGX_OK) {
        rc = ngx_p3x_store_index_fetch(ctx, ngx_p3x_login_index);
    }

    if (rc != NGX_OK) {
        if (rc == NGX_DECLINED) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "pop3_ext: locking \"%V\": unexpected reply",
                          &ctx->mailbox);
        }

        ngx_p3x_login_unlock(ctx);
        return;
    }

    if (ctx->login_pending == 0) {
        ngx_p3x_login_done(ctx);
    }
}


/* a further part of the index of a big maildrop */

static void
ngx_p3x_login_index(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_ctx_t *ctx = data;

    ctx->login_pending--;

    if (status != NGX_P3X_REDIS_OK
        || ngx_p3x_store_index_add(ctx, reply) != NGX_OK)
    {
        /* the parts still on their way are cancelled with the attempt */
        ngx_p3x_login_unlock(ctx);
        return;
    }

    if (ctx->login_pending == 0) {
        ngx_p3x_login_done(ctx);
    }
}


/* the lock is ours but the index could not be read: give both up */

static void
ngx_p3x_login_unlock(ngx_p3x_ctx_t *ctx)
{
    ctx->locked = 0;
    ctx->nmsgs = 0;
    ctx->octets = 0;

    ngx_p3x_login_abort(ctx, "-ERR [SYS/TEMP] mail store unavailable");
    ngx_p3x_store_release(ctx);
}


static void
ngx_p3x_login_done(ngx_p3x_ctx_t *ctx)
{
    ngx_connection_t  *c;

    c = ctx->connection;

    ctx->busy = 0;
    ctx->state = ngx_p3x_state_trans;
    c->log->action = "in transaction state";

    if (ctx->ev_login.timer_set) {
        ngx_del_timer(&ctx->ev_login);
    }

    ngx_p3x_refresh_start(ctx);
    ngx_p3x_metrics_login(ctx, NGX_P3X_LOGIN_OK);

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "pop3_ext: user \"%V\" logged in, %ui messages",
                  &ctx->user, ctx->nmsgs);

    ngx_p3x_reply(ctx, "+OK maildrop has %ui messages (%O octets)",
                  ctx->nmsgs, ctx->octets);

    ngx_p3x_wake(ctx);
}


/*
 * Ends a login attempt with a reply; the session takes commands again.
 * What the attempt still has out is cancelled.
 */

static void
ngx_p3x_login_abort(ngx_p3x_ctx_t *ctx, const char *reply)
{
    ctx->busy = 0;
    ctx->connection->log->action = "in auth state";

    ngx_p3x_metrics_login_abort(ctx, reply);

    ngx_p3x_redis_cancel(&ctx->requests, ctx->login_id);

    /* a user slot is for a session that logs in; this one did not */
    ngx_p3x_limit_conn_release(ctx, 1);

    ngx_p3x_login_forget_password(ctx);
    ngx_p3x_reply(ctx, "%s", reply);

    ngx_p3x_wake(ctx);
}


/*
 * pop3_ext_login_timeout passed: whatever the attempt under way waits
 * for is cancelled, and the session ends.
 */

void
ngx_p3x_login_expired(ngx_p3x_ctx_t *ctx)
{
    ngx_p3x_redis_cancel(&ctx->requests, NGX_P3X_TAG_ANY);
    ngx_p3x_auth_cancel(ctx);

    if (ctx->ev_delay.timer_set) {
        ngx_del_timer(&ctx->ev_delay);
    }

    ctx->busy = 0;
    ctx->sasl = ngx_p3x_sasl_wait_none;
    ctx->end_reason = "login timed out";
    ctx->quit = 1;

    ngx_p3x_login_forget_password(ctx);

    if (ngx_p3x_out_alloc(ctx, NGX_P3X_OUT_SMALL) == NGX_OK
        && ngx_p3x_out_room(ctx) >= NGX_P3X_REPLY_ROOM)
    {
        ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] login timed out" CRLF);
    }
}


static ngx_int_t
ngx_p3x_login_set_mailbox(ngx_p3x_ctx_t *ctx, ngx_str_t *mailbox)
{
    u_char  *p;

    if (!p3x_valid_name(mailbox->data, mailbox->len)) {
        ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                      "pop3_ext: user \"%V\" has an invalid mailbox name",
                      &ctx->user);
        return NGX_ERROR;
    }

    /* "pop3:mbox:{MBOX": the keys' common prefix, the name at its end */

    p = ngx_pnalloc(ctx->connection->pool,
                    sizeof(P3X_MBOX_PREFIX) - 1 + mailbox->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->key_prefix.data = p;
    ctx->key_prefix.len = sizeof(P3X_MBOX_PREFIX) - 1 + mailbox->len;

    p = ngx_cpymem(p, P3X_MBOX_PREFIX, sizeof(P3X_MBOX_PREFIX) - 1);
    ngx_memcpy(p, mailbox->data, mailbox->len);

    ctx->mailbox.data = p;
    ctx->mailbox.len = mailbox->len;

    return NGX_OK;
}


void
ngx_p3x_stls(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    if (!ngx_p3x_ssl_starttls(ctx->session)) {
        ngx_p3x_error(ctx, "-ERR STLS not available");
        return;
    }

    if (cmd->nargs) {
        ngx_p3x_error(ctx, "-ERR STLS takes no arguments");
        return;
    }

    ngx_p3x_out_literal(ctx, "+OK begin TLS negotiation" CRLF);

    /* the session loop sends this, then hands over to the handshake */
    ctx->starttls = 1;
}


/*
 * What a login takes, the lock and the connection slots, lives while the
 * session does: it is renewed every pop3_ext_lock_refresh (5 s, at most
 * lock_ttl / 3), which is also how soon a session learns that its lock
 * was taken (pop3ext kick).
 */

void
ngx_p3x_refresh_start(ngx_p3x_ctx_t *ctx)
{
    if (ctx->refresh.handler == NULL) {
        ctx->refresh.handler = ngx_p3x_refresh_handler;
        ctx->refresh.data = ctx;
        ctx->refresh.log = ctx->connection->log;
        ctx->refresh.cancelable = 1;
    }

    if (!ctx->refresh.timer_set) {
        ngx_add_timer(&ctx->refresh, ctx->conf->lock_refresh);
    }
}


static void
ngx_p3x_refresh_handler(ngx_event_t *ev)
{
    ngx_p3x_ctx_t  *ctx = ev->data;

    if (ctx->locked && !ctx->lock_lost) {
        (void) ngx_p3x_store_refresh(ctx, ngx_p3x_refreshed);
    }

    ngx_p3x_limit_conn_renew(ctx);

    if (ctx->locked || ctx->conn_addr || ctx->conn_user) {
        ngx_add_timer(&ctx->refresh, ctx->conf->lock_refresh);
    }
}


static void
ngx_p3x_refreshed(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_ctx_t *ctx = data;

    /* the session loop ends the session, even an idle one */

    if (ngx_p3x_store_error(reply, "LOCKLOST")) {
        ctx->lock_lost = 1;
        ngx_p3x_wake(ctx);
    }
}
