
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * The mailbox store: what a session asks of Redis, in the data model of
 * ngx_mail_pop3_ext_model.h.  Each operation is one request, and every
 * operation that changes a maildrop is one script that checks the lock
 * token, so a session that lost its lock can change nothing.  Every key a
 * script touches is one of its KEYS, and all of them carry the mailbox's
 * hash tag.
 */


#include "ngx_mail_pop3_ext_module.h"


#define NGX_P3X_KEY_MAX  (sizeof(P3X_MBOX_PREFIX) + P3X_NAME_MAX             \
                          + sizeof(P3X_GONE_SUFFIX) + P3X_UID_MAX)

#define NGX_P3X_ENTRY_MAX  (P3X_UID_MAX + 1 + NGX_INT_T_LEN)

/* a COMMIT entry: "!" before it forces it (EXPIRE 0) */
#define NGX_P3X_COMMIT_ENTRY_MAX  (1 + NGX_P3X_ENTRY_MAX)


static u_char *ngx_p3x_store_key(ngx_p3x_ctx_t *ctx, u_char *buf,
    const char *suffix, size_t len);
static void ngx_p3x_store_gone_key(ngx_p3x_ctx_t *ctx, u_char *buf);
static ngx_int_t ngx_p3x_store_dele_eval(ngx_p3x_ctx_t *ctx,
    ngx_int_t script, ngx_p3x_msg_t *msg, ngx_p3x_redis_handler_pt handler);
static ngx_int_t ngx_p3x_store_eval(ngx_p3x_ctx_t *ctx,
    ngx_p3x_rcall_t *call, ngx_uint_t nkeys, const char **keys,
    ngx_uint_t nargs, const char **args, const size_t *argslen);
static size_t ngx_p3x_store_entry(u_char *buf, ngx_p3x_msg_t *msg);


ngx_int_t
ngx_p3x_store_lock(ngx_p3x_ctx_t *ctx, ngx_p3x_redis_handler_pt handler)
{
    u_char           lock[NGX_P3X_KEY_MAX], dele[NGX_P3X_KEY_MAX],
                     index[NGX_P3X_KEY_MAX], gone[NGX_P3X_KEY_MAX],
                     owner[NGX_P3X_KEY_MAX], last[NGX_P3X_KEY_MAX],
                     ttl[NGX_INT_T_LEN], chunk[NGX_INT_T_LEN],
                     delay[NGX_INT_T_LEN], *who;
    size_t           argslen[5];
    ngx_int_t        rc;
    const char      *keys[6], *args[5];
    ngx_p3x_rcall_t  call;

    ngx_p3x_store_key(ctx, lock, P3X_LOCK_SUFFIX, sizeof(P3X_LOCK_SUFFIX));
    ngx_p3x_store_key(ctx, dele, P3X_DELE_SUFFIX, sizeof(P3X_DELE_SUFFIX));
    ngx_p3x_store_key(ctx, index, P3X_INDEX_SUFFIX,
                      sizeof(P3X_INDEX_SUFFIX));
    ngx_p3x_store_gone_key(ctx, gone);
    ngx_p3x_store_key(ctx, owner, P3X_OWNER_SUFFIX,
                      sizeof(P3X_OWNER_SUFFIX));
    ngx_p3x_store_key(ctx, last, P3X_LAST_SUFFIX, sizeof(P3X_LAST_SUFFIX));

    keys[0] = (const char *) lock;
    keys[1] = (const char *) dele;
    keys[2] = (const char *) index;
    keys[3] = (const char *) gone;
    keys[4] = (const char *) owner;
    keys[5] = (const char *) last;

    /* who holds it, for pop3ext who: the model's P3X_OWNER fields */

    who = ngx_alloc(ngx_cycle->hostname.len + ctx->connection->addr_text.len
                    + ctx->user.len + 4 * NGX_INT64_LEN + 64,
                    ctx->connection->log);
    if (who == NULL) {
        return NGX_ERROR;
    }

    args[0] = (const char *) ctx->token;
    argslen[0] = P3X_TOKEN_LEN;
    args[1] = (const char *) ttl;
    argslen[1] = ngx_sprintf(ttl, "%M", ctx->conf->lock_ttl) - ttl;
    args[2] = (const char *) chunk;
    argslen[2] = ngx_sprintf(chunk, "%d", NGX_P3X_INDEX_CHUNK) - chunk;
    args[3] = (const char *) who;
    argslen[3] = ngx_sprintf(who, "host=%V pid=%P client=%V since=%T%03M "
                             "user=%V", &ngx_cycle->hostname, ngx_pid,
                             &ctx->connection->addr_text,
                             ngx_time(), ngx_timeofday()->msec, &ctx->user)
                 - who;
    args[4] = (const char *) delay;
    argslen[4] = ngx_sprintf(delay, "%M", ctx->conf->login_delay) - delay;

    ngx_p3x_call_init(ctx, &call, NGX_P3X_SCRIPT_LOCK, handler);
    call.tag = ctx->login_id;

    rc = ngx_p3x_store_eval(ctx, &call, 6, keys, 5, args, argslen);

    ngx_free(who);

    return rc;
}


ngx_int_t
ngx_p3x_store_refresh(ngx_p3x_ctx_t *ctx, ngx_p3x_redis_handler_pt handler)
{
    u_char           lock[NGX_P3X_KEY_MAX], owner[NGX_P3X_KEY_MAX],
                     ttl[NGX_INT_T_LEN];
    size_t           argslen[2];
    const char      *keys[2], *args[2];
    ngx_p3x_rcall_t  call;

    ngx_p3x_store_key(ctx, lock, P3X_LOCK_SUFFIX, sizeof(P3X_LOCK_SUFFIX));
    ngx_p3x_store_key(ctx, owner, P3X_OWNER_SUFFIX,
                      sizeof(P3X_OWNER_SUFFIX));

    keys[0] = (const char *) lock;
    keys[1] = (const char *) owner;

    args[0] = (const char *) ctx->token;
    argslen[0] = P3X_TOKEN_LEN;
    args[1] = (const char *) ttl;
    argslen[1] = ngx_sprintf(ttl, "%M", ctx->conf->lock_ttl) - ttl;

    ngx_p3x_call_init(ctx, &call, NGX_P3X_SCRIPT_REFRESH, handler);
    call.idempotent = 1;

    return ngx_p3x_store_eval(ctx, &call, 2, keys, 2, args, argslen);
}


/* DELE marks msg; RSET (msg == NULL) clears every mark */

ngx_int_t
ngx_p3x_store_mark(ngx_p3x_ctx_t *ctx, ngx_p3x_msg_t *msg,
    ngx_p3x_redis_handler_pt handler)
{
    /* marking twice, or clearing twice, is the same as once */
    return ngx_p3x_store_dele_eval(ctx, NGX_P3X_SCRIPT_MARK, msg, handler);
}


/* the marks as Redis has them, after a DELE or RSET of unknown outcome */

ngx_int_t
ngx_p3x_store_marks(ngx_p3x_ctx_t *ctx, ngx_p3x_redis_handler_pt handler)
{
    return ngx_p3x_store_dele_eval(ctx, NGX_P3X_SCRIPT_MARKS, NULL, handler);
}


/*
 * A script on the deletion marks, MARK or MARKS: KEYS the lock and the
 * marks, ARGV the session's token and, for a message, its entry.  Both
 * may run twice harmlessly.
 */

static ngx_int_t
ngx_p3x_store_dele_eval(ngx_p3x_ctx_t *ctx, ngx_int_t script,
    ngx_p3x_msg_t *msg, ngx_p3x_redis_handler_pt handler)
{
    u_char           lock[NGX_P3X_KEY_MAX], dele[NGX_P3X_KEY_MAX],
                     entry[NGX_P3X_ENTRY_MAX];
    size_t           argslen[2];
    ngx_uint_t       nargs;
    const char      *keys[2], *args[2];
    ngx_p3x_rcall_t  call;

    ngx_p3x_store_key(ctx, lock, P3X_LOCK_SUFFIX, sizeof(P3X_LOCK_SUFFIX));
    ngx_p3x_store_key(ctx, dele, P3X_DELE_SUFFIX, sizeof(P3X_DELE_SUFFIX));

    keys[0] = (const char *) lock;
    keys[1] = (const char *) dele;

    args[0] = (const char *) ctx->token;
    argslen[0] = P3X_TOKEN_LEN;
    nargs = 1;

    if (msg) {
        args[1] = (const char *) entry;
        argslen[1] = ngx_p3x_store_entry(entry, msg);
        nargs = 2;
    }

    ngx_p3x_call_init(ctx, &call, script, handler);
    call.idempotent = 1;

    return ngx_p3x_store_eval(ctx, &call, 2, keys, nargs, args, argslen);
}


/*
 * The session takes Redis's marks as its own.  An entry matches a
 * message by UID and size; the session's messages are looked up through
 * a sorted copy, so a large maildrop costs O(N log N), not O(N * M).
 */

static int ngx_libc_cdecl
ngx_p3x_store_msg_cmp(const void *one, const void *two)
{
    ngx_p3x_msg_t  *a = *(ngx_p3x_msg_t **) one;
    ngx_p3x_msg_t  *b = *(ngx_p3x_msg_t **) two;

    ngx_int_t  rc;

    rc = ngx_memn2cmp(a->uid, b->uid, a->uid_len, b->uid_len);

    return rc ? (int) rc : (a->size > b->size) - (a->size < b->size);
}


ngx_int_t
ngx_p3x_store_marks_apply(ngx_p3x_ctx_t *ctx, redisReply *reply)
{
    u_char          *sp;
    ngx_int_t        size;
    ngx_uint_t       i, lo, hi, mid;
    ngx_p3x_msg_t    key, *kp, **sorted;
    redisReply      *el;

    if (reply->type != REDIS_REPLY_ARRAY) {
        return NGX_DECLINED;
    }

    for (i = 0; i < ctx->nmsgs; i++) {
        ctx->msgs[i].deleted = 0;
    }

    ctx->ndeleted = 0;
    ctx->deleted_octets = 0;

    if (reply->elements == 0 || ctx->nmsgs == 0) {
        return NGX_OK;
    }

    sorted = ngx_alloc(ctx->nmsgs * sizeof(ngx_p3x_msg_t *),
                       ctx->connection->log);
    if (sorted == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < ctx->nmsgs; i++) {
        sorted[i] = &ctx->msgs[i];
    }

    ngx_qsort(sorted, ctx->nmsgs, sizeof(ngx_p3x_msg_t *),
              ngx_p3x_store_msg_cmp);

    for (i = 0; i < reply->elements; i++) {
        el = reply->element[i];

        if (el->type != REDIS_REPLY_STRING) {
            continue;
        }

        sp = ngx_strlchr((u_char *) el->str, (u_char *) el->str + el->len,
                         ' ');
        if (sp == NULL) {
            continue;
        }

        size = ngx_atoi(sp + 1, (u_char *) el->str + el->len - sp - 1);

        if (size == NGX_ERROR || sp - (u_char *) el->str > P3X_UID_MAX) {
            continue;
        }

        key.uid = (u_char *) el->str;
        key.uid_len = (uint8_t) (sp - (u_char *) el->str);
        key.size = (uint32_t) size;
        kp = &key;

        lo = 0;
        hi = ctx->nmsgs;

        while (lo < hi) {
            mid = (lo + hi) / 2;

            if (ngx_p3x_store_msg_cmp(&sorted[mid], &kp) < 0) {
                lo = mid + 1;

            } else {
                hi = mid;
            }
        }

        if (lo < ctx->nmsgs && ngx_p3x_store_msg_cmp(&sorted[lo], &kp) == 0
            && !sorted[lo]->deleted)
        {
            sorted[lo]->deleted = 1;
            ctx->ndeleted++;
            ctx->deleted_octets += sorted[lo]->size;
        }
    }

    ngx_free(sorted);

    return NGX_OK;
}


/*
 * The session names what it deleted, and the body key of each, so that
 * every key the script touches is one of its KEYS; see P3X_SCRIPT_COMMIT.
 * Under EXPIRE 0 it also names what it retrieved (ctx->nforced of them),
 * as "!UID SIZE": those go whether marked or not.  With wait= the commit
 * is acknowledged only when replicas have it.
 */

ngx_int_t
ngx_p3x_store_commit(ngx_p3x_ctx_t *ctx, ngx_p3x_redis_handler_pt handler)
{
    u_char           lock[NGX_P3X_KEY_MAX], dele[NGX_P3X_KEY_MAX],
                     index[NGX_P3X_KEY_MAX], meta[NGX_P3X_KEY_MAX],
                     time[NGX_P3X_KEY_MAX], owner[NGX_P3X_KEY_MAX],
                     *entries, *bodies, *p, *q;
    size_t          *lens, prefix_len;
    ngx_int_t        rc;
    ngx_uint_t       i, k, n, nkeys;
    const char     **keys, **args;
    ngx_p3x_msg_t   *msg;
    ngx_p3x_rcall_t  call;

    n = ctx->ndeleted + ctx->nforced;

    keys = ngx_alloc((6 + n + 1 + n) * (sizeof(char *) + sizeof(size_t))
                     + n * (NGX_P3X_COMMIT_ENTRY_MAX + NGX_P3X_KEY_MAX),
                     ctx->connection->log);
    if (keys == NULL) {
        return NGX_ERROR;
    }

    args = keys + 6 + n;
    lens = (size_t *) (args + 1 + n);
    entries = (u_char *) (lens + 6 + n + 1 + n);
    bodies = entries + n * NGX_P3X_COMMIT_ENTRY_MAX;

    keys[0] = (const char *) lock;
    keys[1] = (const char *) dele;
    keys[2] = (const char *) index;
    keys[3] = (const char *) meta;
    keys[4] = (const char *) time;
    keys[5] = (const char *) owner;

    ngx_p3x_store_key(ctx, lock, P3X_LOCK_SUFFIX, sizeof(P3X_LOCK_SUFFIX));
    ngx_p3x_store_key(ctx, dele, P3X_DELE_SUFFIX, sizeof(P3X_DELE_SUFFIX));
    ngx_p3x_store_key(ctx, index, P3X_INDEX_SUFFIX,
                      sizeof(P3X_INDEX_SUFFIX));
    ngx_p3x_store_key(ctx, meta, P3X_META_SUFFIX, sizeof(P3X_META_SUFFIX));
    ngx_p3x_store_key(ctx, time, P3X_TIME_SUFFIX, sizeof(P3X_TIME_SUFFIX));
    ngx_p3x_store_key(ctx, owner, P3X_OWNER_SUFFIX,
                      sizeof(P3X_OWNER_SUFFIX));

    args[0] = (const char *) ctx->token;

    nkeys = 6;
    k = 1;
    p = entries;
    q = bodies;
    prefix_len = 0;

    for (i = 0; i < ctx->nmsgs && nkeys < 6 + n; i++) {
        msg = &ctx->msgs[i];

        if (!msg->deleted && !(ctx->nforced && msg->retrieved)) {
            continue;
        }

        /* KEYS[6 + k] is the body of the entry ARGV[1 + k] */

        keys[nkeys++] = (const char *) q;

        if (prefix_len == 0) {
            prefix_len = ngx_p3x_store_key(ctx, q, P3X_MSG_SUFFIX,
                                           sizeof(P3X_MSG_SUFFIX)) - q;

        } else {
            ngx_memcpy(q, keys[6], prefix_len);
        }

        q = ngx_cpymem(q + prefix_len, msg->uid, msg->uid_len);
        *q++ = '\0';

        args[k] = (const char *) p;

        if (!msg->deleted) {
            *p++ = '!';
        }

        p += ngx_p3x_store_entry(p, msg);
        lens[6 + n + k] = p - (u_char *) args[k];
        k++;
    }

    for (i = 0; i < nkeys; i++) {
        lens[i] = ngx_strlen(keys[i]);
    }

    lens[6 + n] = P3X_TOKEN_LEN;

    ngx_p3x_call_init(ctx, &call, NGX_P3X_SCRIPT_COMMIT, handler);

    /* with nothing deleted only the lock goes: no replica need confirm */
    call.ack = (n > 0);

    rc = ngx_p3x_redis_eval(&call, nkeys, keys, lens, k, args,
                            lens + 6 + n);

    ngx_free(keys);

    return rc;
}


/*
 * Fire and forget: nobody waits for the answer of a closing session.  It
 * is sent again over a new connection if need be (running it twice is
 * harmless), for three Redis timeouts.
 */

void
ngx_p3x_store_release(ngx_p3x_ctx_t *ctx)
{
    u_char           lock[NGX_P3X_KEY_MAX], dele[NGX_P3X_KEY_MAX],
                     gone[NGX_P3X_KEY_MAX], owner[NGX_P3X_KEY_MAX],
                     ttl[NGX_INT_T_LEN];
    size_t           argslen[2];
    const char      *keys[4], *args[2];
    ngx_p3x_rcall_t  call;

    ngx_p3x_store_key(ctx, lock, P3X_LOCK_SUFFIX, sizeof(P3X_LOCK_SUFFIX));
    ngx_p3x_store_key(ctx, dele, P3X_DELE_SUFFIX, sizeof(P3X_DELE_SUFFIX));
    ngx_p3x_store_gone_key(ctx, gone);
    ngx_p3x_store_key(ctx, owner, P3X_OWNER_SUFFIX,
                      sizeof(P3X_OWNER_SUFFIX));

    keys[0] = (const char *) lock;
    keys[1] = (const char *) dele;
    keys[2] = (const char *) gone;
    keys[3] = (const char *) owner;

    args[0] = (const char *) ctx->token;
    argslen[0] = P3X_TOKEN_LEN;
    args[1] = (const char *) ttl;
    argslen[1] = ngx_sprintf(ttl, "%M", ctx->conf->lock_ttl) - ttl;

    ngx_p3x_call_init(ctx, &call, NGX_P3X_SCRIPT_RELEASE, NULL);
    call.owner = NULL;
    call.data = NULL;
    call.idempotent = 1;
    call.timeout = 3 * ctx->conf->redis->timeout;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "pop3_ext: releasing the lock of \"%V\"", &ctx->mailbox);

    if (ngx_p3x_store_eval(ctx, &call, 4, keys, 2, args, argslen)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "pop3_ext: cannot release the lock of \"%V\", "
                      "it expires in %M ms", &ctx->mailbox,
                      ctx->conf->lock_ttl);
    }
}


/*
 * The user record and the user's failure counter, which counts this
 * attempt if the user exists (see P3X_SCRIPT_AUTHINFO).
 */

ngx_int_t
ngx_p3x_store_authinfo(ngx_p3x_ctx_t *ctx, ngx_p3x_redis_handler_pt handler)
{
    u_char           ukey[sizeof(P3X_USER_PREFIX) + P3X_NAME_MAX + 2],
                     fkey[sizeof(P3X_FAIL_USER_PREFIX) + P3X_NAME_MAX + 2],
                     ttl[NGX_INT_T_LEN], *p;
    size_t           keyslen[2], argslen[1];
    const char      *keys[2], *args[1];
    ngx_p3x_rcall_t  call;

    p = ngx_cpymem(ukey, P3X_USER_PREFIX, sizeof(P3X_USER_PREFIX) - 1);
    p = ngx_cpymem(p, ctx->user.data, ctx->user.len);
    p = ngx_cpymem(p, P3X_USER_SUFFIX, sizeof(P3X_USER_SUFFIX) - 1);
    keys[0] = (const char *) ukey;
    keyslen[0] = p - ukey;

    p = ngx_cpymem(fkey, P3X_FAIL_USER_PREFIX,
                   sizeof(P3X_FAIL_USER_PREFIX) - 1);
    p = ngx_cpymem(p, ctx->user.data, ctx->user.len);
    p = ngx_cpymem(p, P3X_TAG_CLOSE, sizeof(P3X_TAG_CLOSE) - 1);
    keys[1] = (const char *) fkey;
    keyslen[1] = p - fkey;

    args[0] = (const char *) ttl;
    argslen[0] = ngx_sprintf(ttl, "%M", ctx->conf->auth_block_time) - ttl;

    ngx_p3x_call_init(ctx, &call, NGX_P3X_SCRIPT_AUTHINFO, handler);
    call.tag = ctx->login_id;

    return ngx_p3x_redis_eval(&call, 2, keys, keyslen, 1, args, argslen);
}


ngx_int_t
ngx_p3x_store_fetch(ngx_p3x_ctx_t *ctx, ngx_p3x_msg_t *msg, off_t offset,
    size_t len, ngx_p3x_redis_handler_pt handler)
{
    u_char           key[NGX_P3X_KEY_MAX], *p, from[NGX_OFF_T_LEN],
                     to[NGX_OFF_T_LEN];
    size_t           argvlen[4];
    const char      *argv[4];
    ngx_p3x_rcall_t  call;

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

    ngx_p3x_call_init(ctx, &call, -1, handler);
    call.idempotent = 1;
    call.key = 1;

    return ngx_p3x_redis_call(&call, 4, argv, argvlen);
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
    u_char           key[NGX_P3X_KEY_MAX], from[NGX_INT_T_LEN],
                     to[NGX_INT_T_LEN];
    size_t           argvlen[4];
    ngx_uint_t       last;
    const char      *argv[4];
    ngx_p3x_rcall_t  call;

    argv[0] = "LRANGE";
    argvlen[0] = 6;
    argv[1] = (const char *) key;
    argvlen[1] = ngx_p3x_store_key(ctx, key, P3X_INDEX_SUFFIX,
                                   sizeof(P3X_INDEX_SUFFIX))
                 - key;
    argv[2] = (const char *) from;
    argv[3] = (const char *) to;

    ngx_p3x_call_init(ctx, &call, -1, handler);
    call.tag = ctx->login_id;
    call.idempotent = 1;
    call.key = 1;

    while (ctx->index_next < ctx->index_total) {
        last = ngx_min(ctx->index_next + NGX_P3X_INDEX_CHUNK,
                       ctx->index_total) - 1;

        argvlen[2] = ngx_sprintf(from, "%ui", ctx->index_next) - from;
        argvlen[3] = ngx_sprintf(to, "%ui", last) - to;

        if (ngx_p3x_redis_call(&call, 4, argv, argvlen) != NGX_OK) {
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

        if (!p3x_valid_uid(e, uid_len)
            || size == NGX_ERROR || size > 0x7fffffff)
        {
            goto invalid;
        }

        m = &ctx->msgs[ctx->nmsgs++];
        m->uid = ngx_cpymem(blob, e, uid_len) - uid_len;
        blob += uid_len;
        m->uid_len = (uint8_t) uid_len;
        m->size = (uint32_t) size;
        m->deleted = 0;
        m->retrieved = 0;

        ctx->octets += size;
        continue;

    invalid:

        ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                      "pop3_ext: maildrop \"%V\" has an invalid index "
                      "entry, skipped", &ctx->mailbox);
    }

    return NGX_OK;
}


/* an error reply whose code (the first word) is code */

ngx_int_t
ngx_p3x_store_error(redisReply *reply, const char *code)
{
    size_t  len;

    len = ngx_strlen(code);

    return reply && reply->type == REDIS_REPLY_ERROR
           && (size_t) reply->len >= len
           && ngx_strncmp(reply->str, code, len) == 0;
}


/* "UID SIZE" */

static size_t
ngx_p3x_store_entry(u_char *buf, ngx_p3x_msg_t *msg)
{
    return ngx_sprintf(buf, "%*s %uD", (size_t) msg->uid_len, msg->uid,
                       msg->size)
           - buf;
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


/* keys are NUL-terminated here */

static ngx_int_t
ngx_p3x_store_eval(ngx_p3x_ctx_t *ctx, ngx_p3x_rcall_t *call,
    ngx_uint_t nkeys, const char **keys, ngx_uint_t nargs,
    const char **args, const size_t *argslen)
{
    size_t      keyslen[6];
    ngx_uint_t  i;

    for (i = 0; i < nkeys; i++) {
        keyslen[i] = ngx_strlen(keys[i]);
    }

    return ngx_p3x_redis_eval(call, nkeys, keys, keyslen, nargs, args,
                              argslen);
}
