
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * An LMTP transaction's work with Redis: recipient look-ups at RCPT, and
 * the message.
 *
 * The message is decoded as it arrives (dot-unstuffing for DATA; for
 * DATA and BDAT the line ends of pop3ext deliver: a bare LF and a lone CR
 * become CRLF, and the message ends with CRLF), a Return-Path line in
 * front (RFC 5321, 4.4: this is the final delivery).  The decoded octets
 * fill a chunk; each full chunk goes to every mailbox of the transaction
 * as one STAGE, which writes it at its offset into that mailbox's
 * staging key (a key per mailbox: mailboxes are on different Cluster
 * slots).  A bounded number of chunks is on its way (see
 * ngx_mail_pop3_ext_lmtp.h); beyond that the session stops reading from
 * the client.
 *
 * At the end of the message, once a mailbox's chunks are all in, one
 * STORE per mailbox checks the delivery id, the quota and the length of
 * the staged body, and renames it to msg:UID with its index entry, all
 * or nothing.  The delivery id is the SHA-256 of the message as stored,
 * so that a retry of the same queue file by the MTA (byte for byte the
 * same: Postfix's Received header names its queue id) stores nothing
 * twice.  With wait=, STORE is acknowledged by replicas before the
 * recipient's 250.
 */


#include "ngx_mail_pop3_ext_lmtp.h"


/* the decoder's states */
#define NGX_P3X_LMTP_D_BOL      0   /* at a line start (after CRLF) */
#define NGX_P3X_LMTP_D_TEXT     1
#define NGX_P3X_LMTP_D_CR       2   /* a CR, its LF not seen yet */
#define NGX_P3X_LMTP_D_DOT      3   /* "." at a line start */
#define NGX_P3X_LMTP_D_DOTCR    4   /* ".\r" at a line start */
#define NGX_P3X_LMTP_D_NL       5   /* after a bare LF, written as CRLF */

#define NGX_P3X_LMTP_KEY_MAX    (sizeof(P3X_MBOX_PREFIX) + P3X_NAME_MAX     \
                                 + sizeof(P3X_DLV_SUFFIX) + P3X_DLV_ID_LEN \
                                 + P3X_TOKEN_LEN + P3X_UID_MAX + 16)


static void ngx_p3x_lmtp_call_init(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_p3x_rcall_t *call, ngx_p3x_redis_handler_pt handler, void *data);
static u_char *ngx_p3x_lmtp_key(u_char *buf, ngx_str_t *name,
    const char *suffix);
static ngx_int_t ngx_p3x_lmtp_lookup_meta(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_str_t *mbox);
static void ngx_p3x_lmtp_exists_handler(void *data, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_lmtp_mailbox_handler(void *data, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_lmtp_meta_handler(void *data, redisReply *reply,
    ngx_uint_t status);
static int64_t ngx_p3x_lmtp_number(redisReply *r);
static ngx_int_t ngx_p3x_lmtp_accept(ngx_p3x_lmtp_ctx_t *ctx,
    ngx_str_t *mailbox);
static ngx_uint_t ngx_p3x_lmtp_active(ngx_p3x_lmtp_ctx_t *ctx);
static void ngx_p3x_lmtp_fail(ngx_p3x_lmtp_mbox_t *mb, const char *code,
    const char *text);
static void ngx_p3x_lmtp_fail_all(ngx_p3x_lmtp_ctx_t *ctx,
    const char *code, const char *text);
static ngx_int_t ngx_p3x_lmtp_chunk_flush(ngx_p3x_lmtp_ctx_t *ctx);
static void ngx_p3x_lmtp_stage(ngx_p3x_lmtp_mbox_t *mb);
static void ngx_p3x_lmtp_stage_handler(void *data, redisReply *reply,
    ngx_uint_t status);
static ngx_int_t ngx_p3x_lmtp_digest(ngx_p3x_lmtp_ctx_t *ctx);
static void ngx_p3x_lmtp_store(ngx_p3x_lmtp_mbox_t *mb);
static void ngx_p3x_lmtp_store_handler(void *data, redisReply *reply,
    ngx_uint_t status);


static void
ngx_p3x_lmtp_call_init(ngx_p3x_lmtp_ctx_t *ctx, ngx_p3x_rcall_t *call,
    ngx_p3x_redis_handler_pt handler, void *data)
{
    ngx_memzero(call, sizeof(ngx_p3x_rcall_t));

    call->redis = ctx->redis;
    call->owner = &ctx->requests;
    call->handler = handler;
    call->data = data;
    call->affinity = (uintptr_t) ctx;   /* one connection: in order */
    call->script = -1;
    call->key = 1;
}


/* "pop3:mbox:{NAME" SUFFIX, NUL-terminated for the log */

static u_char *
ngx_p3x_lmtp_key(u_char *buf, ngx_str_t *name, const char *suffix)
{
    u_char  *p;

    p = ngx_cpymem(buf, P3X_MBOX_PREFIX, sizeof(P3X_MBOX_PREFIX) - 1);
    p = ngx_cpymem(p, name->data, name->len);
    p = ngx_cpymem(p, suffix, ngx_strlen(suffix));
    *p = '\0';

    return p;
}


/*
 * RCPT: does the user exist, which mailbox is it, how full is that
 * mailbox?  The mailbox is usually named like the user, so its usage is
 * asked for at once, in the same round trip; the user record and the
 * mailbox may be on different Cluster slots, so these are separate
 * commands.
 */

ngx_int_t
ngx_p3x_lmtp_lookup(ngx_p3x_lmtp_ctx_t *ctx)
{
    u_char            key[sizeof(P3X_USER_PREFIX) + P3X_NAME_MAX + 2], *p;
    size_t            lens[3];
    const char       *argv[3];
    ngx_p3x_rcall_t   call;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "pop3_ext lmtp: look-up of <%V>, user \"%V\"",
                   &ctx->lookup.addr, &ctx->lookup.user);

    p = ngx_cpymem(key, P3X_USER_PREFIX, sizeof(P3X_USER_PREFIX) - 1);
    p = ngx_cpymem(p, ctx->lookup.user.data, ctx->lookup.user.len);
    p = ngx_cpymem(p, P3X_USER_SUFFIX, sizeof(P3X_USER_SUFFIX) - 1);

    argv[0] = "EXISTS";
    lens[0] = sizeof("EXISTS") - 1;
    argv[1] = (const char *) key;
    lens[1] = p - key;

    ngx_p3x_lmtp_call_init(ctx, &call, ngx_p3x_lmtp_exists_handler, ctx);
    call.idempotent = 1;

    if (ngx_p3x_redis_call(&call, 2, argv, lens) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->pending++;

    argv[0] = "HGET";
    lens[0] = sizeof("HGET") - 1;
    argv[2] = P3X_FIELD_MAILBOX;
    lens[2] = sizeof(P3X_FIELD_MAILBOX) - 1;

    ngx_p3x_lmtp_call_init(ctx, &call, ngx_p3x_lmtp_mailbox_handler, ctx);
    call.idempotent = 1;

    if (ngx_p3x_redis_call(&call, 3, argv, lens) != NGX_OK) {
        ctx->lookup.failed = 1;
        return NGX_OK;
    }

    ctx->pending++;

    if (ngx_p3x_lmtp_lookup_meta(ctx, &ctx->lookup.user) != NGX_OK) {
        ctx->lookup.failed = 1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_p3x_lmtp_lookup_meta(ngx_p3x_lmtp_ctx_t *ctx, ngx_str_t *mbox)
{
    u_char            key[NGX_P3X_LMTP_KEY_MAX], *p;
    size_t            lens[6];
    const char       *argv[6];
    ngx_p3x_rcall_t   call;

    p = ngx_p3x_lmtp_key(key, mbox, P3X_META_SUFFIX);

    argv[0] = "HMGET";
    lens[0] = sizeof("HMGET") - 1;
    argv[1] = (const char *) key;
    lens[1] = p - key;
    argv[2] = P3X_META_MESSAGES;
    lens[2] = sizeof(P3X_META_MESSAGES) - 1;
    argv[3] = P3X_META_OCTETS;
    lens[3] = sizeof(P3X_META_OCTETS) - 1;
    argv[4] = P3X_META_QUOTA_MESSAGES;
    lens[4] = sizeof(P3X_META_QUOTA_MESSAGES) - 1;
    argv[5] = P3X_META_QUOTA_OCTETS;
    lens[5] = sizeof(P3X_META_QUOTA_OCTETS) - 1;

    ngx_p3x_lmtp_call_init(ctx, &call, ngx_p3x_lmtp_meta_handler, ctx);
    call.idempotent = 1;

    if (ngx_p3x_redis_call(&call, 6, argv, lens) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->pending++;
    ctx->lookup.meta_of = *mbox;
    ctx->lookup.meta = 0;

    return NGX_OK;
}


static void
ngx_p3x_lmtp_exists_handler(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_lmtp_ctx_t  *ctx = data;

    ctx->pending--;

    if (status != NGX_P3X_REDIS_OK || reply->type != REDIS_REPLY_INTEGER) {
        ctx->lookup.failed = 1;

    } else {
        ctx->lookup.exists = (reply->integer > 0);
    }

    ngx_p3x_lmtp_wake(ctx);
}


static void
ngx_p3x_lmtp_mailbox_handler(void *data, redisReply *reply,
    ngx_uint_t status)
{
    ngx_p3x_lmtp_ctx_t  *ctx = data;

    u_char  *p;

    ctx->pending--;

    if (status != NGX_P3X_REDIS_OK
        || (reply->type != REDIS_REPLY_STRING
            && reply->type != REDIS_REPLY_NIL))
    {
        ctx->lookup.failed = 1;

    } else if (reply->type == REDIS_REPLY_STRING && reply->len > 0) {

        if (!p3x_valid_name((u_char *) reply->str, reply->len)) {
            ctx->lookup.bad_mailbox = 1;

        } else {
            p = ctx->lookup_buf + NGX_P3X_LMTP_LINE_MAX + P3X_NAME_MAX;
            ngx_memcpy(p, reply->str, reply->len);
            ctx->lookup.mailbox.data = p;
            ctx->lookup.mailbox.len = reply->len;
        }
    }

    ngx_p3x_lmtp_wake(ctx);
}


static void
ngx_p3x_lmtp_meta_handler(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_lmtp_ctx_t  *ctx = data;

    ngx_uint_t  i;

    ctx->pending--;

    if (status != NGX_P3X_REDIS_OK || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 4)
    {
        ctx->lookup.failed = 1;
        ngx_p3x_lmtp_wake(ctx);
        return;
    }

    for (i = 0; i < 4; i++) {
        if (reply->element[i]->type != REDIS_REPLY_NIL
            && reply->element[i]->type != REDIS_REPLY_STRING)
        {
            ctx->lookup.failed = 1;
            ngx_p3x_lmtp_wake(ctx);
            return;
        }
    }

    ctx->lookup.messages = ngx_p3x_lmtp_number(reply->element[0]);
    ctx->lookup.octets = ngx_p3x_lmtp_number(reply->element[1]);
    ctx->lookup.quota_messages = ngx_p3x_lmtp_number(reply->element[2]);
    ctx->lookup.quota_octets = ngx_p3x_lmtp_number(reply->element[3]);
    ctx->lookup.meta = 1;

    ngx_p3x_lmtp_wake(ctx);
}


/* a meta field: -1 when absent (or not a number) */

static int64_t
ngx_p3x_lmtp_number(redisReply *r)
{
    off_t  n;

    if (r->type != REDIS_REPLY_STRING) {
        return -1;
    }

    n = ngx_atoof((u_char *) r->str, r->len);

    return n == NGX_ERROR ? -1 : (int64_t) n;
}


/*
 * The look-up is complete (nothing pending): the RCPT's reply, or the
 * usage of another mailbox to read first.
 */

void
ngx_p3x_lmtp_lookup_done(ngx_p3x_lmtp_ctx_t *ctx)
{
    int64_t                 qm, qo, size;
    ngx_str_t              *mailbox;
    ngx_p3x_lmtp_lookup_t  *lk;

    lk = &ctx->lookup;

    ngx_log_debug5(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "pop3_ext lmtp: look-up of <%V> done: failed:%d "
                   "exists:%d mailbox:\"%V\" usage of \"%V\"",
                   &lk->addr, lk->failed, lk->exists, &lk->mailbox,
                   &lk->meta_of);

    if (lk->failed) {
        ngx_p3x_lmtp_reply(ctx, "451 4.3.0 <%V> mail store unavailable",
                           &lk->addr);
        return;
    }

    if (!lk->exists) {
        ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                      "pop3_ext: LMTP recipient <%V>: no user \"%V\"",
                      &lk->addr, &lk->user);
        ngx_p3x_lmtp_reply(ctx, "550 5.1.1 <%V> user unknown", &lk->addr);
        return;
    }

    if (lk->bad_mailbox) {
        ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                      "pop3_ext: user \"%V\" has an invalid mailbox name",
                      &lk->user);
        ngx_p3x_lmtp_reply(ctx, "451 4.3.5 <%V> mailbox misconfigured",
                           &lk->addr);
        return;
    }

    mailbox = lk->mailbox.len ? &lk->mailbox : &lk->user;

    if (mailbox->len != lk->meta_of.len
        || ngx_strncmp(mailbox->data, lk->meta_of.data, mailbox->len) != 0)
    {
        /* another user's mailbox: its own usage */

        if (ngx_p3x_lmtp_lookup_meta(ctx, mailbox) != NGX_OK) {
            ngx_p3x_lmtp_reply(ctx, "451 4.3.0 <%V> mail store "
                               "unavailable", &lk->addr);
            return;
        }

        ctx->wait = ngx_p3x_lmtp_wait_lookup;
        return;
    }

    /*
     * The quota at RCPT, as Dovecot checks it: a mailbox that is full, or
     * that the announced SIZE would take over its limit.  Usage that is
     * not kept yet (a mailbox of 0.2) is counted by STORE, which enforces
     * the quota again, atomically.
     */

    qm = lk->quota_messages >= 0 ? lk->quota_messages
                                 : (int64_t) ctx->conf->quota_messages;
    qo = lk->quota_octets >= 0 ? lk->quota_octets
                               : (int64_t) ctx->conf->quota_octets;
    size = ngx_max(ctx->declared, 1);

    /*
     * Usage is whatever Redis holds, up to 2^63 - 1: compared without a
     * sum that could overflow (qo >= 1 and size <= max_size, so qo - size
     * cannot).
     */

    if (lk->messages >= 0 && lk->octets >= 0
        && ((qm > 0 && lk->messages >= qm)
            || (qo > 0 && lk->octets > qo - size)))
    {
        ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                      "pop3_ext: LMTP recipient <%V>: mailbox \"%V\" full",
                      &lk->addr, mailbox);

        if (ctx->conf->quota_tempfail) {
            ngx_p3x_lmtp_reply(ctx, "452 4.2.2 <%V> mailbox full",
                               &lk->addr);

        } else {
            ngx_p3x_lmtp_reply(ctx, "552 5.2.2 <%V> mailbox full",
                               &lk->addr);
        }

        return;
    }

    if (ngx_p3x_lmtp_accept(ctx, mailbox) != NGX_OK) {
        ngx_p3x_lmtp_reply(ctx, "451 4.3.0 internal server error");
        return;
    }

    ngx_p3x_lmtp_reply(ctx, "250 2.1.5 <%V> OK", &lk->addr);
}


/*
 * An accepted recipient: into the transaction's memory, and its mailbox
 * too unless an earlier recipient had it (one copy per mailbox).
 */

static ngx_int_t
ngx_p3x_lmtp_accept(ngx_p3x_lmtp_ctx_t *ctx, ngx_str_t *mailbox)
{
    u_char               *p;
    ngx_uint_t            i, added;
    ngx_p3x_lmtp_rcpt_t  *rcpt;
    ngx_p3x_lmtp_mbox_t  *mb;

    mb = ctx->mboxes.elts;
    added = 0;

    for (i = 0; i < ctx->mboxes.nelts; i++) {
        if (mb[i].name.len == mailbox->len
            && ngx_strncmp(mb[i].name.data, mailbox->data, mailbox->len)
               == 0)
        {
            break;
        }
    }

    if (i == ctx->mboxes.nelts) {
        mb = ngx_array_push(&ctx->mboxes);
        if (mb == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(mb, sizeof(ngx_p3x_lmtp_mbox_t));

        mb->ctx = ctx;
        mb->status = ngx_p3x_lmtp_mb_staging;

        mb->name.data = ngx_pnalloc(ctx->pool, mailbox->len);
        mb->stage.data = ngx_pnalloc(ctx->pool, NGX_P3X_LMTP_KEY_MAX);

        if (mb->name.data == NULL || mb->stage.data == NULL) {
            ctx->mboxes.nelts--;
            return NGX_ERROR;
        }

        ngx_memcpy(mb->name.data, mailbox->data, mailbox->len);
        mb->name.len = mailbox->len;

        p = ngx_p3x_lmtp_key(mb->stage.data, &mb->name, P3X_STAGE_SUFFIX);
        p = ngx_cpymem(p, ctx->token, P3X_TOKEN_LEN);
        mb->stage.len = p - mb->stage.data;

        added = 1;
    }

    /* a mailbox without a recipient would be stored to with no reply */

    rcpt = ngx_array_push(&ctx->rcpts);
    if (rcpt == NULL) {
        ctx->mboxes.nelts -= added;
        return NGX_ERROR;
    }

    rcpt->mbox = i;
    rcpt->addr.data = ngx_pnalloc(ctx->pool, ctx->lookup.addr.len);

    if (rcpt->addr.data == NULL) {
        ctx->rcpts.nelts--;
        ctx->mboxes.nelts -= added;
        return NGX_ERROR;
    }

    ngx_memcpy(rcpt->addr.data, ctx->lookup.addr.data, ctx->lookup.addr.len);
    rcpt->addr.len = ctx->lookup.addr.len;

    return NGX_OK;
}


/*
 * DATA or the first BDAT: the chunk (smaller when the message goes to
 * many mailboxes, so that a session's requests stay near
 * NGX_P3X_LMTP_CHUNKS_TOTAL), the digest, and the Return-Path line.
 */

ngx_int_t
ngx_p3x_lmtp_body_start(ngx_p3x_lmtp_ctx_t *ctx)
{
    size_t  size;

    size = NGX_P3X_LMTP_CHUNKS_TOTAL
           / (NGX_P3X_LMTP_INFLIGHT * ctx->mboxes.nelts);
    size = ngx_max(size, NGX_P3X_LMTP_CHUNK_MIN);
    size = ngx_min(size, NGX_P3X_LMTP_CHUNK_MAX);

    ctx->chunk = ngx_alloc(size, ctx->connection->log);
    if (ctx->chunk == NULL) {
        return NGX_ERROR;
    }

    ctx->chunk_size = size;
    ctx->window = NGX_P3X_LMTP_CHUNKS_TOTAL / (size * ctx->mboxes.nelts);
    ctx->window = ngx_max(ctx->window, NGX_P3X_LMTP_INFLIGHT);

    ctx->sha = EVP_MD_CTX_new();

    if (ctx->sha == NULL
        || EVP_DigestInit_ex(ctx->sha, EVP_sha256(), NULL) != 1)
    {
        /* the transaction goes on: a second DATA must not leak these */

        ngx_free(ctx->chunk);
        ctx->chunk = NULL;

        if (ctx->sha) {
            EVP_MD_CTX_free(ctx->sha);
            ctx->sha = NULL;
        }

        return NGX_ERROR;
    }

    /* the sender fits: a command line is shorter than any chunk */

    ctx->chunk_len = ngx_snprintf(ctx->chunk, size, "Return-Path: <%V>"
                                  CRLF, &ctx->from)
                     - ctx->chunk;
    ctx->header_len = ctx->chunk_len;
    ctx->body_len = ctx->chunk_len;
    ctx->staged = 0;
    ctx->dstate = NGX_P3X_LMTP_D_BOL;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "pop3_ext lmtp: message to %ui mailboxes, chunks of %uz, "
                   "%ui on their way per mailbox",
                   ctx->mboxes.nelts, size, ctx->window);

    return NGX_OK;
}


/*
 * Decodes buffered message octets into the chunk, and sends full chunks.
 * NGX_AGAIN: the input is used up; NGX_BUSY: Redis is behind, nothing
 * more is taken; NGX_OK: a BDAT chunk ended, or the message did (then
 * the session waits for the deliveries).
 */

ngx_int_t
ngx_p3x_lmtp_body_read(ngx_p3x_lmtp_ctx_t *ctx)
{
    u_char      ch, *p, *last, *d, *lf;
    size_t      n;
    ngx_buf_t  *b;
    ngx_uint_t  st, bdat, end, slow;

    b = &ctx->in;
    bdat = (ctx->state == ngx_p3x_lmtp_state_bdat);
    end = 0;

    if (bdat && ctx->bdat_discard) {
        n = ngx_min((off_t) (b->last - b->pos), ctx->bdat_left);
        b->pos += n;
        ctx->bdat_left -= n;

        if (ctx->bdat_left) {
            return NGX_AGAIN;
        }

        ctx->state = ctx->pool ? ngx_p3x_lmtp_state_mail
                     : ctx->lhlo ? ngx_p3x_lmtp_state_ready
                     : ngx_p3x_lmtp_state_init;
        return NGX_OK;
    }

    st = ctx->dstate;
    slow = 0;

    while (b->pos < b->last && !end) {

        if (ctx->chunk_size - ctx->chunk_len < 4) {
            ctx->dstate = st;

            if (ngx_p3x_lmtp_chunk_flush(ctx) == NGX_BUSY) {
                return NGX_BUSY;
            }
        }

        /* as much as fits, to the end of the BDAT chunk */

        last = b->last;

        if (bdat && (off_t) (last - b->pos) > ctx->bdat_left) {
            last = b->pos + ctx->bdat_left;
        }

        n = (ctx->chunk_size - ctx->chunk_len - 3) / 3 + 1;

        if ((size_t) (last - b->pos) > n) {
            last = b->pos + n;
        }

        if (last == b->pos) {
            break;
        }

        p = b->pos;
        d = ctx->chunk + ctx->chunk_len;

        /* each input octet writes at most three: CR, LF and itself */

        while (p < last) {

            /*
             * The common case, a whole line ending in CRLF with no other
             * CR or LF (or plain text to the end of the input), is
             * copied at once; the rest goes octet by octet below.
             */

            if (!slow
                && (st == NGX_P3X_LMTP_D_TEXT || st == NGX_P3X_LMTP_D_NL
                    || (st == NGX_P3X_LMTP_D_BOL && (bdat || *p != '.'))))
            {
                /* memchr(): libc's, word at a time */

                lf = memchr(p, LF, last - p);

                if (lf) {
                    if (lf > p && lf[-1] == CR
                        && memchr(p, CR, lf - 1 - p) == NULL)
                    {
                        d = ngx_cpymem(d, p, lf + 1 - p);
                        p = lf + 1;
                        st = NGX_P3X_LMTP_D_BOL;
                        continue;
                    }

                } else if (memchr(p, CR, last - p) == NULL) {
                    d = ngx_cpymem(d, p, last - p);
                    p = last;
                    st = NGX_P3X_LMTP_D_TEXT;
                    continue;
                }

                /*
                 * A CR or LF of its own in this line: octet by octet to
                 * the next line start, or a line of lone CRs would be
                 * scanned again for each of them.
                 */

                slow = 1;
            }

            ch = *p++;

            switch (st) {

            case NGX_P3X_LMTP_D_DOT:
                if (ch == CR) {
                    st = NGX_P3X_LMTP_D_DOTCR;
                    continue;
                }

                /* RFC 5321, 4.5.2: a stuffed dot goes */
                goto text;

            case NGX_P3X_LMTP_D_DOTCR:
                if (ch == LF) {
                    end = 1;
                    goto done;
                }

                /* the dot was stuffing, and the CR is alone */
                *d++ = CR;
                *d++ = LF;
                goto text;

            case NGX_P3X_LMTP_D_CR:
                *d++ = CR;
                *d++ = LF;

                if (ch == LF) {
                    st = NGX_P3X_LMTP_D_BOL;
                    slow = 0;
                    continue;
                }

                /* a CR alone got its LF */
                goto text;

            case NGX_P3X_LMTP_D_BOL:
                if (ch == '.' && !bdat) {
                    st = NGX_P3X_LMTP_D_DOT;
                    continue;
                }

                /* fall through */

            default:
            text:
                if (ch == CR) {
                    st = NGX_P3X_LMTP_D_CR;

                } else if (ch == LF) {
                    *d++ = CR;
                    *d++ = LF;
                    st = NGX_P3X_LMTP_D_NL;
                    slow = 0;

                } else {
                    *d++ = ch;
                    st = NGX_P3X_LMTP_D_TEXT;
                }
            }
        }

    done:

        n = p - b->pos;
        b->pos = p;

        if (bdat) {
            ctx->bdat_left -= n;
        }

        ctx->body_len += (d - (ctx->chunk + ctx->chunk_len));
        ctx->chunk_len = d - ctx->chunk;

        if (bdat && ctx->bdat_left == 0) {
            break;
        }
    }

    ctx->dstate = st;

    if (bdat) {
        if (ctx->bdat_left) {
            return NGX_AGAIN;
        }

        if (!ctx->bdat_last) {
            ngx_p3x_lmtp_reply(ctx, "250 2.0.0 %O octets received",
                               ctx->bdat_size);
            ctx->state = ngx_p3x_lmtp_state_mail;
            return NGX_OK;
        }

        /* BDAT LAST: a CR alone or a last line without its end */

        if (ctx->chunk_size - ctx->chunk_len < 2
            && ngx_p3x_lmtp_chunk_flush(ctx) == NGX_BUSY)
        {
            /* the octets are consumed: the line end is added later */
            ctx->bdat_left = 0;
            return NGX_BUSY;
        }

        if (st == NGX_P3X_LMTP_D_CR || st == NGX_P3X_LMTP_D_TEXT) {
            ctx->chunk[ctx->chunk_len++] = CR;
            ctx->chunk[ctx->chunk_len++] = LF;
            ctx->body_len += 2;
            ctx->dstate = NGX_P3X_LMTP_D_BOL;
        }

        end = 1;
    }

    if (!end) {
        return NGX_AGAIN;
    }

    ctx->wait = ngx_p3x_lmtp_wait_delivery;

    return NGX_OK;
}


/* may the next chunk go? */

ngx_int_t
ngx_p3x_lmtp_body_window(ngx_p3x_lmtp_ctx_t *ctx)
{
    ngx_uint_t  n;

    n = ngx_p3x_lmtp_active(ctx);

    if (n && ctx->body_code == NULL
        && ctx->pending >= ctx->window * n)
    {
        return NGX_AGAIN;
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_p3x_lmtp_active(ngx_p3x_lmtp_ctx_t *ctx)
{
    ngx_uint_t            i, n;
    ngx_p3x_lmtp_mbox_t  *mb;

    mb = ctx->mboxes.elts;
    n = 0;

    for (i = 0; i < ctx->mboxes.nelts; i++) {
        if (mb[i].status == ngx_p3x_lmtp_mb_staging) {
            n++;
        }
    }

    return n;
}


static void
ngx_p3x_lmtp_fail(ngx_p3x_lmtp_mbox_t *mb, const char *code,
    const char *text)
{
    if (mb->status == ngx_p3x_lmtp_mb_stored
        || mb->status == ngx_p3x_lmtp_mb_failed)
    {
        return;
    }

    mb->status = ngx_p3x_lmtp_mb_failed;
    mb->code = code;
    mb->text = text;

    /* refused by a limit (5xx, a full mailbox's 452), or not stored */

    ngx_p3x_metrics_delivery(code[0] == '5' || ngx_strncmp(code, "452", 3) == 0
                             ? NGX_P3X_DELIVERY_REJECTED
                             : NGX_P3X_DELIVERY_FAILED, 0);
}


static void
ngx_p3x_lmtp_fail_all(ngx_p3x_lmtp_ctx_t *ctx, const char *code,
    const char *text)
{
    ngx_uint_t            i;
    ngx_p3x_lmtp_mbox_t  *mb;

    mb = ctx->mboxes.elts;

    for (i = 0; i < ctx->mboxes.nelts; i++) {
        ngx_p3x_lmtp_fail(&mb[i], code, text);
    }
}


/*
 * The chunk goes to every mailbox still taking the message; NGX_BUSY
 * when as many chunks as allowed are on their way.  A message over
 * pop3_ext_lmtp_max_size (announced SIZE= may lie) is read to its end
 * and dropped.
 */

static ngx_int_t
ngx_p3x_lmtp_chunk_flush(ngx_p3x_lmtp_ctx_t *ctx)
{
    ngx_uint_t            i;
    ngx_p3x_lmtp_mbox_t  *mb;

    if (ctx->chunk_len == 0) {
        return NGX_OK;
    }

    if (ctx->body_code == NULL
        && ctx->body_len - ctx->header_len > ctx->conf->max_size)
    {
        ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                      "pop3_ext: LMTP message over %O octets, refused",
                      ctx->conf->max_size);

        ctx->body_code = "552 5.3.4";
        ctx->body_text = "message too big";
        ngx_p3x_lmtp_fail_all(ctx, ctx->body_code, ctx->body_text);
    }

    if (ctx->body_code || ngx_p3x_lmtp_active(ctx) == 0) {
        ctx->chunk_len = 0;
        return NGX_OK;
    }

    if (ngx_p3x_lmtp_body_window(ctx) != NGX_OK) {
        return NGX_BUSY;
    }

    if (EVP_DigestUpdate(ctx->sha, ctx->chunk, ctx->chunk_len) != 1) {
        ngx_p3x_lmtp_fail_all(ctx, "451 4.3.0", "internal server error");
        ctx->chunk_len = 0;
        return NGX_OK;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "pop3_ext lmtp: chunk of %uz at %O, %ui pending",
                   ctx->chunk_len, ctx->staged, ctx->pending);

    mb = ctx->mboxes.elts;

    for (i = 0; i < ctx->mboxes.nelts; i++) {
        if (mb[i].status == ngx_p3x_lmtp_mb_staging) {
            ngx_p3x_lmtp_stage(&mb[i]);
        }
    }

    ctx->staged += ctx->chunk_len;
    ctx->chunk_len = 0;

    return NGX_OK;
}


static void
ngx_p3x_lmtp_stage(ngx_p3x_lmtp_mbox_t *mb)
{
    u_char               off[NGX_OFF_T_LEN], ttl[NGX_INT_T_LEN];
    size_t               keylen[1], arglen[3];
    const char          *keys[1], *args[3];
    ngx_p3x_rcall_t      call;
    ngx_p3x_lmtp_ctx_t  *ctx;

    ctx = mb->ctx;

    keys[0] = (const char *) mb->stage.data;
    keylen[0] = mb->stage.len;

    args[0] = (const char *) off;
    arglen[0] = ngx_sprintf(off, "%O", ctx->staged) - off;
    args[1] = (const char *) ctx->chunk;
    arglen[1] = ctx->chunk_len;
    args[2] = (const char *) ttl;
    arglen[2] = ngx_sprintf(ttl, "%d", P3X_STAGE_TTL) - ttl;

    ngx_p3x_lmtp_call_init(ctx, &call, ngx_p3x_lmtp_stage_handler, mb);
    call.script = NGX_P3X_SCRIPT_STAGE;

    /* SETRANGE at an offset: running it twice writes the same octets */
    call.idempotent = 1;

    mb->staged = 1;

    if (ngx_p3x_redis_eval(&call, 1, keys, keylen, 3, args, arglen)
        != NGX_OK)
    {
        ngx_p3x_lmtp_fail(mb, "451 4.3.0", "mail store unavailable");
        return;
    }

    mb->inflight++;
    ctx->pending++;
}


static void
ngx_p3x_lmtp_stage_handler(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_lmtp_mbox_t  *mb = data;

    ngx_p3x_lmtp_ctx_t  *ctx;

    ctx = mb->ctx;

    ctx->pending--;
    mb->inflight--;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "pop3_ext lmtp: STAGE for \"%V\" done: status %ui, "
                   "%ui on their way", &mb->name, status, mb->inflight);

    if (status != NGX_P3X_REDIS_OK || reply->type == REDIS_REPLY_ERROR) {

        if (mb->status == ngx_p3x_lmtp_mb_staging) {
            ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                          "pop3_ext: LMTP chunk for \"%V\" not staged: %s",
                          &mb->name,
                          status == NGX_P3X_REDIS_OK ? reply->str
                          : status == NGX_P3X_REDIS_NOTRUN
                          ? "redis unavailable"
                          : "redis did not answer in time");
        }

        ngx_p3x_lmtp_fail(mb, "451 4.3.0", "mail store unavailable");
    }

    ngx_p3x_lmtp_wake(ctx);
}


/*
 * The delivery id: the SHA-256 of P3X_LMTP_ID_PREFIX and the message's
 * own SHA-256, as pop3ext deliver --id names its keys (the SHA-256 of
 * the id given).
 */

static ngx_int_t
ngx_p3x_lmtp_digest(ngx_p3x_lmtp_ctx_t *ctx)
{
    u_char        md[EVP_MAX_MD_SIZE];
    u_char        id[sizeof(P3X_LMTP_ID_PREFIX) - 1 + 64];
    unsigned int  len;

    if (EVP_DigestFinal_ex(ctx->sha, md, &len) != 1 || len != 32) {
        return NGX_ERROR;
    }

    ngx_memcpy(id, P3X_LMTP_ID_PREFIX, sizeof(P3X_LMTP_ID_PREFIX) - 1);
    ngx_hex_dump(id + sizeof(P3X_LMTP_ID_PREFIX) - 1, md, 32);

    if (EVP_DigestInit_ex(ctx->sha, EVP_sha256(), NULL) != 1
        || EVP_DigestUpdate(ctx->sha, id, sizeof(id)) != 1
        || EVP_DigestFinal_ex(ctx->sha, md, &len) != 1 || len != 32)
    {
        return NGX_ERROR;
    }

    ngx_hex_dump(ctx->dlv, md, 32);

    return NGX_OK;
}


/*
 * The end of the message: the last chunk, then one STORE per mailbox
 * once all its chunks are in.  NGX_AGAIN while any is on its way.
 */

ngx_int_t
ngx_p3x_lmtp_deliver(ngx_p3x_lmtp_ctx_t *ctx)
{
    ngx_uint_t            i, again;
    ngx_p3x_lmtp_mbox_t  *mb;

    if (ctx->chunk_len && ngx_p3x_lmtp_chunk_flush(ctx) == NGX_BUSY) {
        return NGX_AGAIN;
    }

    if (ctx->state == ngx_p3x_lmtp_state_bdat
        && (ctx->dstate == NGX_P3X_LMTP_D_CR
            || ctx->dstate == NGX_P3X_LMTP_D_TEXT))
    {
        /* BDAT LAST whose line end did not fit before a full window */
        ctx->chunk[ctx->chunk_len++] = CR;
        ctx->chunk[ctx->chunk_len++] = LF;
        ctx->body_len += 2;
        ctx->dstate = NGX_P3X_LMTP_D_BOL;

        if (ngx_p3x_lmtp_chunk_flush(ctx) == NGX_BUSY) {
            return NGX_AGAIN;
        }
    }

    if (!ctx->digested && ctx->body_code == NULL
        && ngx_p3x_lmtp_active(ctx))
    {
        if (ngx_p3x_lmtp_digest(ctx) != NGX_OK) {
            ngx_p3x_lmtp_fail_all(ctx, "451 4.3.0",
                                  "internal server error");
        }

        ctx->digested = 1;
    }

    mb = ctx->mboxes.elts;
    again = 0;

    for (i = 0; i < ctx->mboxes.nelts; i++) {

        if (mb[i].status == ngx_p3x_lmtp_mb_staging && mb[i].inflight == 0) {
            ngx_p3x_lmtp_store(&mb[i]);
        }

        if (mb[i].status == ngx_p3x_lmtp_mb_staging
            || mb[i].status == ngx_p3x_lmtp_mb_storing
            || mb[i].inflight)
        {
            again = 1;
        }
    }

    return again ? NGX_AGAIN : NGX_OK;
}


static void
ngx_p3x_lmtp_store(ngx_p3x_lmtp_mbox_t *mb)
{
    u_char               index[NGX_P3X_LMTP_KEY_MAX],
                         body[NGX_P3X_LMTP_KEY_MAX],
                         meta[NGX_P3X_LMTP_KEY_MAX],
                         mtime[NGX_P3X_LMTP_KEY_MAX],
                         dlv[NGX_P3X_LMTP_KEY_MAX],
                         len[NGX_OFF_T_LEN], ttl[NGX_INT_T_LEN],
                         when[NGX_INT64_LEN], qo[NGX_OFF_T_LEN],
                         qm[NGX_INT_T_LEN], rnd[6], *p;
    size_t               keylen[6], arglen[6];
    ngx_time_t          *tp;
    const char          *keys[6], *args[6];
    ngx_p3x_rcall_t      call;
    unsigned long long   ms;
    ngx_p3x_lmtp_ctx_t  *ctx;

    ctx = mb->ctx;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_p3x_lmtp_fail(mb, "451 4.3.0", "internal server error");
        return;
    }

    tp = ngx_timeofday();
    ms = (unsigned long long) tp->sec * 1000 + tp->msec;

    p3x_uid_make(mb->uid, ms, rnd);
    mb->uid_len = P3X_UID_NEW_LEN;

    keys[0] = (const char *) index;
    keylen[0] = ngx_p3x_lmtp_key(index, &mb->name, P3X_INDEX_SUFFIX) - index;

    p = ngx_p3x_lmtp_key(body, &mb->name, P3X_MSG_SUFFIX);
    p = ngx_cpymem(p, mb->uid, mb->uid_len);
    keys[1] = (const char *) body;
    keylen[1] = p - body;

    keys[2] = (const char *) meta;
    keylen[2] = ngx_p3x_lmtp_key(meta, &mb->name, P3X_META_SUFFIX) - meta;
    keys[3] = (const char *) mtime;
    keylen[3] = ngx_p3x_lmtp_key(mtime, &mb->name, P3X_TIME_SUFFIX) - mtime;
    keys[4] = (const char *) mb->stage.data;
    keylen[4] = mb->stage.len;

    p = ngx_p3x_lmtp_key(dlv, &mb->name, P3X_DLV_SUFFIX);
    p = ngx_cpymem(p, ctx->dlv, P3X_DLV_ID_LEN);
    keys[5] = (const char *) dlv;
    keylen[5] = p - dlv;

    args[0] = (const char *) len;
    arglen[0] = ngx_sprintf(len, "%O", ctx->staged) - len;
    args[1] = (const char *) mb->uid;
    arglen[1] = mb->uid_len;
    args[2] = (const char *) ttl;
    arglen[2] = ngx_sprintf(ttl, "%d", P3X_DELIVERY_TTL) - ttl;
    args[3] = (const char *) when;
    arglen[3] = ngx_sprintf(when, "%uL", ms) - when;
    args[4] = (const char *) qo;
    arglen[4] = ngx_sprintf(qo, "%O", ctx->conf->quota_octets) - qo;
    args[5] = (const char *) qm;
    arglen[5] = ngx_sprintf(qm, "%ui", ctx->conf->quota_messages) - qm;

    ngx_p3x_lmtp_call_init(ctx, &call, ngx_p3x_lmtp_store_handler, mb);
    call.script = NGX_P3X_SCRIPT_STORE;

    /* a recipient's 250 waits for the replicas, with wait= */
    call.ack = 1;

    mb->tries++;

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "pop3_ext lmtp: STORE for \"%V\" as %*s, try %ui",
                   &mb->name, mb->uid_len, mb->uid, mb->tries);

    if (ngx_p3x_redis_eval(&call, 6, keys, keylen, 6, args, arglen)
        != NGX_OK)
    {
        ngx_p3x_lmtp_fail(mb, "451 4.3.0", "mail store unavailable");
        return;
    }

    mb->status = ngx_p3x_lmtp_mb_storing;
    ctx->pending++;
}


static void
ngx_p3x_lmtp_store_handler(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_lmtp_mbox_t  *mb = data;

    size_t               n, i;
    ngx_log_t           *log;
    ngx_uint_t           result;
    ngx_p3x_lmtp_ctx_t  *ctx;

    ctx = mb->ctx;
    log = ctx->connection->log;

    ctx->pending--;
    result = NGX_P3X_DELIVERIES;            /* failures: ngx_p3x_lmtp_fail() */
    mb->status = ngx_p3x_lmtp_mb_staging;   /* for ngx_p3x_lmtp_fail() */

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, log, 0,
                   "pop3_ext lmtp: STORE for \"%V\" done: status %ui",
                   &mb->name, status);

    if (status == NGX_P3X_REDIS_NOTRUN) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "pop3_ext: LMTP delivery to \"%V\" not sent: "
                      "redis unavailable", &mb->name);
        ngx_p3x_lmtp_fail(mb, "451 4.3.0", "mail store unavailable");
        goto done;
    }

    if (status == NGX_P3X_REDIS_UNKNOWN) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "pop3_ext: LMTP delivery to \"%V\": outcome unknown "
                      "(redis did not answer in time)", &mb->name);
        ngx_p3x_lmtp_fail(mb, "451 4.3.0", "mail store did not answer, "
                          "the message may have been stored: try again");
        goto done;
    }

    if (reply->type == REDIS_REPLY_ERROR) {

        if (ngx_p3x_store_error(reply, "EXISTS")
            && mb->tries < NGX_P3X_LMTP_STORE_TRIES)
        {
            /* the UID is taken: another one, from the loop */
            goto done;
        }

        if (ngx_p3x_store_error(reply, "OVERQUOTA")) {
            ngx_log_error(NGX_LOG_INFO, log, 0,
                          "pop3_ext: LMTP delivery to \"%V\" refused: %s",
                          &mb->name, reply->str);

            if (ctx->conf->quota_tempfail) {
                ngx_p3x_lmtp_fail(mb, "452 4.2.2", "mailbox full");

            } else {
                ngx_p3x_lmtp_fail(mb, "552 5.2.2", "mailbox full");
            }

            goto done;
        }

        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "pop3_ext: LMTP delivery to \"%V\" refused: %s",
                      &mb->name, reply->str);

        ngx_p3x_lmtp_fail(mb, "451 4.3.0",
                          ngx_p3x_store_error(reply, "STAGED")
                          ? "staged message lost, try again"
                          : "mail store error");
        goto done;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_INTEGER)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "pop3_ext: LMTP delivery to \"%V\": unexpected "
                      "reply", &mb->name);
        ngx_p3x_lmtp_fail(mb, "451 4.3.0", "mail store error");
        goto done;
    }

    if (status == NGX_P3X_REDIS_UNACKED) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "pop3_ext: LMTP delivery to \"%V\": outcome unknown "
                      "(replicas did not confirm)", &mb->name);
        ngx_p3x_lmtp_fail(mb, "451 4.3.0", "mail store did not confirm "
                          "the delivery, try again");
        goto done;
    }

    n = ngx_min(reply->element[0]->len, P3X_UID_MAX);
    ngx_memcpy(mb->uid, reply->element[0]->str, n);
    mb->uid_len = n;
    mb->dup = (reply->element[1]->integer == 0);
    mb->status = ngx_p3x_lmtp_mb_stored;

    /*
     * the UID of a delivery stored before may come from any writer of the
     * model; it goes into the reply only if it is one (RFC 1939's UID
     * octets): the message is stored either way
     */

    for (i = 0; i < n; i++) {
        if (mb->uid[i] < 0x21 || mb->uid[i] > 0x7e) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "pop3_ext: LMTP delivery to \"%V\": STORE "
                          "returned an invalid UID", &mb->name);
            mb->uid_len = 0;
            break;
        }
    }

    result = mb->dup ? NGX_P3X_DELIVERY_DUPLICATE : NGX_P3X_DELIVERY_STORED;

    ngx_log_error(NGX_LOG_INFO, log, 0,
                  "pop3_ext: LMTP %s \"%V\" as %*s, %O octets",
                  mb->dup ? "delivery already stored in" : "delivered to",
                  &mb->name, mb->uid_len, mb->uid, ctx->staged);

done:

    ngx_p3x_metrics_delivery(result, ctx->staged);
    ngx_p3x_lmtp_wake(ctx);
}


/*
 * RFC 2033, 4.2: one reply per accepted recipient, in RCPT order, after
 * the message.  NGX_AGAIN: the output buffer is full, more to come.
 */

ngx_int_t
ngx_p3x_lmtp_replies(ngx_p3x_lmtp_ctx_t *ctx)
{
    ngx_p3x_lmtp_rcpt_t  *rcpt;
    ngx_p3x_lmtp_mbox_t  *mb;

    while (ctx->reply_next < ctx->rcpts.nelts) {

        if ((size_t) (ctx->out.end - ctx->out.last)
            < NGX_P3X_LMTP_REPLY_MAX)
        {
            return NGX_AGAIN;
        }

        rcpt = (ngx_p3x_lmtp_rcpt_t *) ctx->rcpts.elts + ctx->reply_next++;
        mb = (ngx_p3x_lmtp_mbox_t *) ctx->mboxes.elts + rcpt->mbox;

        if (mb->status == ngx_p3x_lmtp_mb_stored) {
            ngx_p3x_lmtp_reply(ctx, "250 2.0.0 <%V> %s %*s", &rcpt->addr,
                               mb->dup ? "already stored as" : "stored as",
                               mb->uid_len, mb->uid);

        } else {
            ngx_p3x_lmtp_reply(ctx, "%s <%V> %s", mb->code, &rcpt->addr,
                               mb->text);
        }
    }

    return NGX_OK;
}


/*
 * Staged bodies that were not stored are deleted now (a transaction that
 * ended without a 250, a session that went away); nobody waits for it,
 * and the TTL covers a DEL that does not arrive.  It follows the STAGEs
 * on the session's connection, so it runs after them.
 */

void
ngx_p3x_lmtp_discard(ngx_p3x_lmtp_ctx_t *ctx)
{
    size_t                lens[2];
    ngx_uint_t            i;
    const char           *argv[2];
    ngx_p3x_rcall_t       call;
    ngx_p3x_lmtp_mbox_t  *mb;

    if (ctx->pool == NULL) {
        return;
    }

    mb = ctx->mboxes.elts;

    for (i = 0; i < ctx->mboxes.nelts; i++) {

        if (!mb[i].staged || mb[i].status == ngx_p3x_lmtp_mb_stored) {
            continue;
        }

        mb[i].staged = 0;

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                       "pop3_ext lmtp: staged body \"%V\" deleted",
                       &mb[i].stage);

        argv[0] = "DEL";
        lens[0] = sizeof("DEL") - 1;
        argv[1] = (const char *) mb[i].stage.data;
        lens[1] = mb[i].stage.len;

        ngx_p3x_lmtp_call_init(ctx, &call, NULL, NULL);
        call.owner = NULL;
        call.idempotent = 1;
        call.timeout = 3 * ctx->redis->timeout;

        (void) ngx_p3x_redis_call(&call, 2, argv, lens);
    }
}
