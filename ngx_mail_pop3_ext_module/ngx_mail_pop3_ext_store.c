
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * The mailbox store: what a session asks of Redis, in the data model of
 * ngx_mail_pop3_ext_model.h.  Each operation is one request, and every
 * operation that changes a maildrop is one script that checks the lock
 * token, so a session that lost its lock can change nothing.
 */


#include "ngx_mail_pop3_ext_module.h"

#include <ngx_sha1.h>


#define NGX_P3X_KEY_MAX  (sizeof(P3X_MBOX_PREFIX) + P3X_NAME_MAX             \
                          + sizeof(P3X_GONE_SUFFIX) + P3X_UID_MAX)


ngx_p3x_script_t  ngx_p3x_scripts[] = {
    { ngx_string("lock"), ngx_string(P3X_SCRIPT_LOCK), "" },
    { ngx_string("refresh"), ngx_string(P3X_SCRIPT_REFRESH), "" },
    { ngx_string("mark"), ngx_string(P3X_SCRIPT_MARK), "" },
    { ngx_string("commit"), ngx_string(P3X_SCRIPT_COMMIT), "" },
    { ngx_string("release"), ngx_string(P3X_SCRIPT_RELEASE), "" },
    { ngx_string("authinfo"), ngx_string(P3X_SCRIPT_AUTHINFO), "" },
    { ngx_string("fail"), ngx_string(P3X_SCRIPT_FAIL), "" },
    { ngx_string("conn"), ngx_string(P3X_SCRIPT_CONN), "" },
    { ngx_null_string, ngx_null_string, "" }
};


static u_char *ngx_p3x_store_key(ngx_p3x_ctx_t *ctx, u_char *buf,
    const char *suffix, size_t len);
static void ngx_p3x_store_gone_key(ngx_p3x_ctx_t *ctx, u_char *buf);
static ngx_int_t ngx_p3x_store_eval(ngx_p3x_ctx_t *ctx, ngx_int_t script,
    ngx_uint_t nkeys, const char **keys, ngx_uint_t nargs,
    const char **args, const size_t *argslen,
    ngx_p3x_redis_handler_pt handler);


ngx_int_t
ngx_p3x_store_init_scripts(ngx_conf_t *cf)
{
    u_char            hash[20];
    ngx_sha1_t        sha1;
    ngx_p3x_script_t  *s;

    for (s = ngx_p3x_scripts; s->name.len; s++) {
        ngx_sha1_init(&sha1);
        ngx_sha1_update(&sha1, s->source.data, s->source.len);
        ngx_sha1_final(hash, &sha1);

        ngx_hex_dump(s->sha1, hash, 20);
    }

    return NGX_OK;
}


ngx_int_t
ngx_p3x_store_lock(ngx_p3x_ctx_t *ctx, ngx_p3x_redis_handler_pt handler)
{
    u_char       lock[NGX_P3X_KEY_MAX], dele[NGX_P3X_KEY_MAX],
                 index[NGX_P3X_KEY_MAX], gone[NGX_P3X_KEY_MAX],
                 ttl[NGX_INT_T_LEN], chunk[NGX_INT_T_LEN];
    size_t       argslen[3];
    const char  *keys[4], *args[3];

    ngx_p3x_store_key(ctx, lock, P3X_LOCK_SUFFIX, sizeof(P3X_LOCK_SUFFIX));
    ngx_p3x_store_key(ctx, dele, P3X_DELE_SUFFIX, sizeof(P3X_DELE_SUFFIX));
    ngx_p3x_store_key(ctx, index, P3X_INDEX_SUFFIX,
                      sizeof(P3X_INDEX_SUFFIX));
    ngx_p3x_store_gone_key(ctx, gone);

    keys[0] = (const char *) lock;
    keys[1] = (const char *) dele;
    keys[2] = (const char *) index;
    keys[3] = (const char *) gone;

    args[0] = (const char *) ctx->token;
    argslen[0] = P3X_TOKEN_LEN;
    args[1] = (const char *) ttl;
    argslen[1] = ngx_sprintf(ttl, "%M", ctx->conf->lock_ttl) - ttl;
    args[2] = (const char *) chunk;
    argslen[2] = ngx_sprintf(chunk, "%d", NGX_P3X_INDEX_CHUNK) - chunk;

    return ngx_p3x_store_eval(ctx, NGX_P3X_SCRIPT_LOCK, 4, keys, 3, args,
                              argslen, handler);
}


ngx_int_t
ngx_p3x_store_refresh(ngx_p3x_ctx_t *ctx, ngx_p3x_redis_handler_pt handler)
{
    u_char       lock[NGX_P3X_KEY_MAX], ttl[NGX_INT_T_LEN];
    size_t       argslen[2];
    const char  *keys[1], *args[2];

    ngx_p3x_store_key(ctx, lock, P3X_LOCK_SUFFIX, sizeof(P3X_LOCK_SUFFIX));

    keys[0] = (const char *) lock;

    args[0] = (const char *) ctx->token;
    argslen[0] = P3X_TOKEN_LEN;
    args[1] = (const char *) ttl;
    argslen[1] = ngx_sprintf(ttl, "%M", ctx->conf->lock_ttl) - ttl;

    return ngx_p3x_store_eval(ctx, NGX_P3X_SCRIPT_REFRESH, 1, keys, 2, args,
                              argslen, handler);
}


/* DELE marks msg; RSET (msg == NULL) clears every mark */

ngx_int_t
ngx_p3x_store_mark(ngx_p3x_ctx_t *ctx, ngx_p3x_msg_t *msg,
    ngx_p3x_redis_handler_pt handler)
{
    u_char       lock[NGX_P3X_KEY_MAX], dele[NGX_P3X_KEY_MAX],
                 entry[P3X_UID_MAX + 1 + NGX_INT_T_LEN];
    size_t       argslen[2];
    const char  *keys[2], *args[2];

    ngx_p3x_store_key(ctx, lock, P3X_LOCK_SUFFIX, sizeof(P3X_LOCK_SUFFIX));
    ngx_p3x_store_key(ctx, dele, P3X_DELE_SUFFIX, sizeof(P3X_DELE_SUFFIX));

    keys[0] = (const char *) lock;
    keys[1] = (const char *) dele;

    args[0] = (const char *) ctx->token;
    argslen[0] = P3X_TOKEN_LEN;

    if (msg == NULL) {
        return ngx_p3x_store_eval(ctx, NGX_P3X_SCRIPT_MARK, 2, keys, 1, args,
                                  argslen, handler);
    }

    args[1] = (const char *) entry;
    argslen[1] = ngx_sprintf(entry, "%*s %uD", (size_t) msg->uid_len,
                             msg->uid, msg->size)
                 - entry;

    return ngx_p3x_store_eval(ctx, NGX_P3X_SCRIPT_MARK, 2, keys, 2, args,
                              argslen, handler);
}


/*
 * The session names what it deleted, and the body key of each, so that
 * every key the script touches is one of its KEYS; see P3X_SCRIPT_COMMIT.
 */

ngx_int_t
ngx_p3x_store_commit(ngx_p3x_ctx_t *ctx, ngx_p3x_redis_handler_pt handler)
{
    u_char          lock[NGX_P3X_KEY_MAX], dele[NGX_P3X_KEY_MAX],
                    index[NGX_P3X_KEY_MAX], numkeys[NGX_INT_T_LEN],
                    *entries, *bodies, *p, *q;
    size_t          *argvlen, prefix_len;
    ngx_int_t        rc;
    ngx_uint_t       i, n, k, nkeys;
    const char     **argv;
    ngx_p3x_msg_t   *msg;

    n = 7 + 2 * ctx->ndeleted;

    argv = ngx_alloc(n * (sizeof(char *) + sizeof(size_t))
                     + ctx->ndeleted * (P3X_UID_MAX + 1 + NGX_INT_T_LEN)
                     + ctx->ndeleted * NGX_P3X_KEY_MAX,
                     ctx->connection->log);
    if (argv == NULL) {
        return NGX_ERROR;
    }

    argvlen = (size_t *) (argv + n);
    entries = (u_char *) (argvlen + n);
    bodies = entries + ctx->ndeleted * (P3X_UID_MAX + 1 + NGX_INT_T_LEN);

    nkeys = 3 + ctx->ndeleted;

    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = (const char *) ngx_p3x_scripts[NGX_P3X_SCRIPT_COMMIT].sha1;
    argvlen[1] = 40;
    argv[2] = (const char *) numkeys;
    argvlen[2] = ngx_sprintf(numkeys, "%ui", nkeys) - numkeys;
    argv[3] = (const char *) lock;
    argvlen[3] = ngx_p3x_store_key(ctx, lock, P3X_LOCK_SUFFIX,
                                   sizeof(P3X_LOCK_SUFFIX)) - lock;
    argv[4] = (const char *) dele;
    argvlen[4] = ngx_p3x_store_key(ctx, dele, P3X_DELE_SUFFIX,
                                   sizeof(P3X_DELE_SUFFIX)) - dele;
    argv[5] = (const char *) index;
    argvlen[5] = ngx_p3x_store_key(ctx, index, P3X_INDEX_SUFFIX,
                                   sizeof(P3X_INDEX_SUFFIX)) - index;

    /* KEYS[4..]: the bodies; then ARGV[1] the token, ARGV[2..] entries */

    k = 6;
    n = 6 + ctx->ndeleted;
    argv[n] = (const char *) ctx->token;
    argvlen[n++] = P3X_TOKEN_LEN;

    p = entries;
    q = bodies;
    prefix_len = 0;

    for (i = 0; i < ctx->nmsgs; i++) {
        msg = &ctx->msgs[i];

        if (!msg->deleted) {
            continue;
        }

        argv[k] = (const char *) q;

        if (prefix_len == 0) {
            prefix_len = ngx_p3x_store_key(ctx, q, P3X_MSG_SUFFIX,
                                           sizeof(P3X_MSG_SUFFIX)) - q;

        } else {
            ngx_memcpy(q, argv[6], prefix_len);
        }

        q = ngx_cpymem(q + prefix_len, msg->uid, msg->uid_len);
        argvlen[k] = q - (u_char *) argv[k];
        k++;

        argv[n] = (const char *) p;
        p = ngx_sprintf(p, "%*s %uD", (size_t) msg->uid_len, msg->uid,
                        msg->size);
        argvlen[n] = p - (u_char *) argv[n];
        n++;
    }

    rc = ngx_p3x_redis_send(ctx->conf->redis, n, argv, argvlen,
                            NGX_P3X_SCRIPT_COMMIT, handler, ctx);

    ngx_free(argv);

    return rc;
}


/*
 * Fire and forget: nobody waits for the answer of a closing session.  The
 * Redis client retries it over a new connection if this one fails.
 */

void
ngx_p3x_store_release(ngx_p3x_ctx_t *ctx)
{
    u_char       lock[NGX_P3X_KEY_MAX], dele[NGX_P3X_KEY_MAX],
                 gone[NGX_P3X_KEY_MAX], ttl[NGX_INT_T_LEN];
    size_t       argslen[2];
    const char  *keys[3], *args[2];

    ngx_p3x_store_key(ctx, lock, P3X_LOCK_SUFFIX, sizeof(P3X_LOCK_SUFFIX));
    ngx_p3x_store_key(ctx, dele, P3X_DELE_SUFFIX, sizeof(P3X_DELE_SUFFIX));
    ngx_p3x_store_gone_key(ctx, gone);

    keys[0] = (const char *) lock;
    keys[1] = (const char *) dele;
    keys[2] = (const char *) gone;

    args[0] = (const char *) ctx->token;
    argslen[0] = P3X_TOKEN_LEN;
    args[1] = (const char *) ttl;
    argslen[1] = ngx_sprintf(ttl, "%M", ctx->conf->lock_ttl) - ttl;

    if (ngx_p3x_store_eval(ctx, NGX_P3X_SCRIPT_RELEASE, 3, keys, 2, args,
                           argslen, NULL)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "pop3_ext: cannot release the lock of \"%V\", "
                      "it expires in %M ms", &ctx->mailbox,
                      ctx->conf->lock_ttl);
    }
}


ngx_int_t
ngx_p3x_store_fetch(ngx_p3x_ctx_t *ctx, ngx_p3x_msg_t *msg, off_t offset,
    size_t len, ngx_p3x_redis_handler_pt handler)
{
    u_char       key[NGX_P3X_KEY_MAX], *p, from[NGX_OFF_T_LEN],
                 to[NGX_OFF_T_LEN];
    size_t       argvlen[4];
    const char  *argv[4];

    p = ngx_p3x_store_key(ctx, key, P3X_MSG_SUFFIX, sizeof(P3X_MSG_SUFFIX));
    p = ngx_cpymem(p, msg->uid, msg->uid_len);

    argv[0] = "GETRANGE";
    argvlen[0] = 8;
    argv[1] = (const char *) key;
    argvlen[1] = p - key;
    argv[2] = (const char *) from;
    argvlen[2] = ngx_sprintf(from, "%O", offset) - from;
    argv[3] = (const char *) to;
    argvlen[3] = ngx_sprintf(to, "%O", offset + (off_t) len - 1) - to;

    return ngx_p3x_redis_send(ctx->conf->redis, 4, argv, argvlen, -1,
                              handler, ctx);
}


/*
 * The LOCK script's reply: { N, the first entries }.  The message table
 * is made for N; ngx_p3x_store_index_fetch() asks for the rest.
 */

ngx_int_t
ngx_p3x_store_index_begin(ngx_p3x_ctx_t *ctx, redisReply *reply)
{
    redisReply  *n;

    ctx->nmsgs = 0;
    ctx->octets = 0;
    ctx->index_total = 0;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[0]->integer < 0
        || reply->element[1]->type != REDIS_REPLY_ARRAY)
    {
        return NGX_DECLINED;
    }

    n = reply->element[0];

    if (n->integer > 0) {
        ctx->msgs = ngx_palloc(ctx->connection->pool,
                               (size_t) n->integer * sizeof(ngx_p3x_msg_t));
        if (ctx->msgs == NULL) {
            return NGX_ERROR;
        }
    }

    ctx->index_total = (ngx_uint_t) n->integer;
    ctx->index_next = ngx_min(ctx->index_total, NGX_P3X_INDEX_CHUNK);

    return ngx_p3x_store_index_add(ctx, reply->element[1]);
}


/* LRANGE for every chunk not read yet, all sent at once */

ngx_int_t
ngx_p3x_store_index_fetch(ngx_p3x_ctx_t *ctx,
    ngx_p3x_redis_handler_pt handler)
{
    u_char       key[NGX_P3X_KEY_MAX], from[NGX_INT_T_LEN],
                 to[NGX_INT_T_LEN];
    size_t       argvlen[4];
    ngx_uint_t   last;
    const char  *argv[4];

    argv[0] = "LRANGE";
    argvlen[0] = 6;
    argv[1] = (const char *) key;
    argvlen[1] = ngx_p3x_store_key(ctx, key, P3X_INDEX_SUFFIX,
                                   sizeof(P3X_INDEX_SUFFIX))
                 - key;
    argv[2] = (const char *) from;
    argv[3] = (const char *) to;

    while (ctx->index_next < ctx->index_total) {
        last = ngx_min(ctx->index_next + NGX_P3X_INDEX_CHUNK,
                       ctx->index_total) - 1;

        argvlen[2] = ngx_sprintf(from, "%ui", ctx->index_next) - from;
        argvlen[3] = ngx_sprintf(to, "%ui", last) - to;

        if (ngx_p3x_redis_send(ctx->conf->redis, 4, argv, argvlen, -1,
                               handler, ctx)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ctx->index_next = last + 1;
        ctx->login_pending++;
    }

    return NGX_OK;
}


/*
 * Appends index entries ("UID SIZE") to the message table.  Entries that
 * break the model are logged and left out: numbering stays consistent
 * within the session either way.
 */

ngx_int_t
ngx_p3x_store_index_add(ngx_p3x_ctx_t *ctx, redisReply *reply)
{
    u_char         *blob, *sp, *e;
    size_t          i, total, uid_len;
    ngx_int_t       size;
    ngx_p3x_msg_t  *m;
    redisReply     *el;

    if (reply->type != REDIS_REPLY_ARRAY) {
        return NGX_DECLINED;
    }

    if (reply->elements == 0) {
        return NGX_OK;
    }

    total = 0;

    for (i = 0; i < reply->elements; i++) {
        total += reply->element[i]->len;
    }

    blob = ngx_pnalloc(ctx->connection->pool, total);
    if (blob == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < reply->elements; i++) {
        el = reply->element[i];

        if (ctx->nmsgs == ctx->index_total) {
            break;
        }

        if (el->type != REDIS_REPLY_STRING) {
            goto invalid;
        }

        e = (u_char *) el->str;
        sp = ngx_strlchr(e, e + el->len, ' ');

        if (sp == NULL) {
            goto invalid;
        }

        uid_len = sp - e;
        size = ngx_atoi(sp + 1, e + el->len - sp - 1);

        if (uid_len == 0 || uid_len > P3X_UID_MAX
            || size == NGX_ERROR || size > 0x7fffffff)
        {
            goto invalid;
        }

        for (sp = e; sp < e + uid_len; sp++) {
            if (*sp < 0x21 || *sp > 0x7e) {
                goto invalid;
            }
        }

        m = &ctx->msgs[ctx->nmsgs++];
        m->uid = ngx_cpymem(blob, e, uid_len) - uid_len;
        blob += uid_len;
        m->uid_len = (uint8_t) uid_len;
        m->size = (uint32_t) size;
        m->deleted = 0;

        ctx->octets += size;
        continue;

    invalid:

        ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                      "pop3_ext: maildrop \"%V\" has an invalid index "
                      "entry, skipped", &ctx->mailbox);
    }

    return NGX_OK;
}


/* "pop3:mbox:{MBOX}:gone:TOKEN" */

static void
ngx_p3x_store_gone_key(ngx_p3x_ctx_t *ctx, u_char *buf)
{
    u_char  *p;

    p = ngx_p3x_store_key(ctx, buf, P3X_GONE_SUFFIX, sizeof(P3X_GONE_SUFFIX));
    p = ngx_cpymem(p, ctx->token, P3X_TOKEN_LEN);
    *p = '\0';
}


/* "pop3:mbox:{MBOX" + suffix, NUL-terminated; returns the end */

static u_char *
ngx_p3x_store_key(ngx_p3x_ctx_t *ctx, u_char *buf, const char *suffix,
    size_t len)
{
    u_char  *p;

    p = ngx_cpymem(buf, ctx->key_prefix.data, ctx->key_prefix.len);
    p = ngx_cpymem(p, suffix, len - 1);
    *p = '\0';

    return p;
}


static ngx_int_t
ngx_p3x_store_eval(ngx_p3x_ctx_t *ctx, ngx_int_t script, ngx_uint_t nkeys,
    const char **keys, ngx_uint_t nargs, const char **args,
    const size_t *argslen, ngx_p3x_redis_handler_pt handler)
{
    size_t      keyslen[4];
    ngx_uint_t  i;

    for (i = 0; i < nkeys; i++) {
        keyslen[i] = ngx_strlen(keys[i]);
    }

    return ngx_p3x_store_script(ctx, script, nkeys, keys, keyslen, nargs,
                                args, argslen, handler);
}


/* EVALSHA of one of ngx_p3x_scripts[]; at most 4 keys and 4 arguments */

ngx_int_t
ngx_p3x_store_script(ngx_p3x_ctx_t *ctx, ngx_int_t script, ngx_uint_t nkeys,
    const char **keys, const size_t *keyslen, ngx_uint_t nargs,
    const char **args, const size_t *argslen,
    ngx_p3x_redis_handler_pt handler)
{
    u_char       numkeys[NGX_INT_T_LEN];
    size_t       argvlen[11];
    ngx_uint_t   i, n;
    const char  *argv[11];

    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = (const char *) ngx_p3x_scripts[script].sha1;
    argvlen[1] = 40;
    argv[2] = (const char *) numkeys;
    argvlen[2] = ngx_sprintf(numkeys, "%ui", nkeys) - numkeys;

    n = 3;

    for (i = 0; i < nkeys; i++) {
        argv[n] = keys[i];
        argvlen[n++] = keyslen[i];
    }

    for (i = 0; i < nargs; i++) {
        argv[n] = args[i];
        argvlen[n++] = argslen[i];
    }

    return ngx_p3x_redis_send(ctx->conf->redis, n, argv, argvlen, script,
                              handler, ctx);
}
