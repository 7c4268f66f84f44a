
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * The TRANSACTION and UPDATE states (RFC 1939, 5 and 6): STAT, LIST,
 * UIDL, RETR, TOP, DELE, RSET, LAST, NOOP, and QUIT's commit.
 *
 * Message numbers are fixed for the session: the table was read at
 * login.  DELE and RSET change marks in Redis, and QUIT commits in one
 * script, which removes what is both marked there and named by the
 * session.  A reply never claims what did not happen: when Redis does not
 * answer in time, a DELE or RSET says the outcome is unknown and the
 * marks are read back before the next command, and a QUIT says that the
 * deletions may or may not have been applied.
 */


#include "ngx_mail_pop3_ext_module.h"


static ngx_p3x_msg_t *ngx_p3x_message(ngx_p3x_ctx_t *ctx,
    ngx_p3x_cmd_t *cmd, ngx_uint_t nargs);
static void ngx_p3x_body_start(ngx_p3x_ctx_t *ctx, ngx_p3x_msg_t *msg,
    off_t lines);
static ngx_int_t ngx_p3x_body_next(ngx_p3x_ctx_t *ctx);
static ngx_int_t ngx_p3x_body_copy_rest(ngx_p3x_ctx_t *ctx);
static ngx_int_t ngx_p3x_body_end(ngx_p3x_ctx_t *ctx);
static void ngx_p3x_body_chunk(void *data, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_dele_marked(void *data, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_rset_cleared(void *data, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_marks_done(void *data, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_committed(void *data, redisReply *reply,
    ngx_uint_t status);
static ngx_uint_t ngx_p3x_mark_outcome(ngx_p3x_ctx_t *ctx,
    redisReply *reply, ngx_uint_t status, const char *what);


void
ngx_p3x_noop(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    if (ngx_p3x_extra_args(ctx, cmd)) {
        return;
    }

    ngx_p3x_out_literal(ctx, "+OK" CRLF);
}


void
ngx_p3x_stat(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    if (ngx_p3x_extra_args(ctx, cmd)) {
        return;
    }

    ngx_p3x_reply(ctx, "+OK %ui %O", ctx->nmsgs - ctx->ndeleted,
                  ctx->octets - ctx->deleted_octets);
}


/*
 * The message a command names, or NULL after the error reply.  A bad
 * number is a client error; a deleted or missing message is not.
 */

static ngx_p3x_msg_t *
ngx_p3x_message(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd, ngx_uint_t nargs)
{
    ngx_int_t       n;
    ngx_p3x_msg_t  *msg;

    if (cmd->nargs != nargs) {
        ngx_p3x_error(ctx, nargs == 1 ? "-ERR one message number expected"
                                      : "-ERR two numbers expected");
        return NULL;
    }

    n = ngx_p3x_parse_number(&cmd->args[0]);

    if (n == NGX_ERROR) {
        ngx_p3x_error(ctx, "-ERR invalid message number");
        return NULL;
    }

    if (n == 0 || (ngx_uint_t) n > ctx->nmsgs) {
        ngx_p3x_out_literal(ctx, "-ERR no such message" CRLF);
        return NULL;
    }

    msg = &ctx->msgs[n - 1];

    if (msg->deleted) {
        ngx_p3x_reply(ctx, "-ERR message %i is deleted", n);
        return NULL;
    }

    return msg;
}


void
ngx_p3x_list(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    ngx_p3x_msg_t  *msg;

    if (cmd->nargs == 0) {
        ngx_p3x_reply(ctx, "+OK %ui messages (%O octets)",
                      ctx->nmsgs - ctx->ndeleted,
                      ctx->octets - ctx->deleted_octets);
        ctx->stream = ngx_p3x_stream_list;
        ctx->stream_next = 0;
        return;
    }

    msg = ngx_p3x_message(ctx, cmd, 1);

    if (msg) {
        ngx_p3x_reply(ctx, "+OK %ui %uD", msg - ctx->msgs + 1, msg->size);
    }
}


void
ngx_p3x_uidl(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    ngx_p3x_msg_t  *msg;

    if (cmd->nargs == 0) {
        ngx_p3x_out_literal(ctx, "+OK unique-id listing follows" CRLF);
        ctx->stream = ngx_p3x_stream_uidl;
        ctx->stream_next = 0;
        return;
    }

    msg = ngx_p3x_message(ctx, cmd, 1);

    if (msg) {
        ngx_p3x_reply(ctx, "+OK %ui %*s", msg - ctx->msgs + 1,
                      (size_t) msg->uid_len, msg->uid);
    }
}


/*
 * Continues a multi-line reply.  NGX_OK: it is complete; NGX_AGAIN: the
 * buffer must drain first, or a body chunk is on its way (ctx->busy).
 */

ngx_int_t
ngx_p3x_stream(ngx_p3x_ctx_t *ctx)
{
    u_char         *p;
    ngx_buf_t      *b;
    ngx_p3x_msg_t  *msg;

    b = ctx->out;

    if (ctx->stream == ngx_p3x_stream_body) {
        return ngx_p3x_body_next(ctx);
    }

    while (ctx->stream_next < ctx->nmsgs) {

        if ((size_t) (b->end - b->last) < P3X_UID_MAX + NGX_INT_T_LEN + 8) {
            return NGX_AGAIN;
        }

        msg = &ctx->msgs[ctx->stream_next++];

        if (msg->deleted) {
            continue;
        }

        if (ctx->stream == ngx_p3x_stream_list) {
            p = ngx_sprintf(b->last, "%ui %uD" CRLF,
                            msg - ctx->msgs + 1, msg->size);

        } else {
            p = ngx_sprintf(b->last, "%ui %*s" CRLF, msg - ctx->msgs + 1,
                            (size_t) msg->uid_len, msg->uid);
        }

        b->last = p;
    }

    if ((size_t) (b->end - b->last) < 3) {
        return NGX_AGAIN;
    }

    b->last = ngx_cpymem(b->last, "." CRLF, 3);
    ctx->stream = ngx_p3x_stream_none;

    return NGX_OK;
}


void
ngx_p3x_retr(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    ngx_p3x_msg_t  *msg;

    msg = ngx_p3x_message(ctx, cmd, 1);

    if (msg) {
        ngx_p3x_body_start(ctx, msg, -1);
    }
}


void
ngx_p3x_top(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    ngx_int_t       lines;
    ngx_p3x_msg_t  *msg;

    if (cmd->nargs != 2) {
        ngx_p3x_error(ctx, "-ERR TOP takes a message number and a count");
        return;
    }

    lines = ngx_p3x_parse_number(&cmd->args[1]);

    if (lines == NGX_ERROR) {
        ngx_p3x_error(ctx, "-ERR invalid line count");
        return;
    }

    msg = ngx_p3x_message(ctx, cmd, 2);

    if (msg) {
        ngx_p3x_body_start(ctx, msg, lines);
    }
}


/* RETR (lines == -1) and TOP: the "+OK" waits for the first chunk, so
 * that a store failure can still be answered with -ERR */

static void
ngx_p3x_body_start(ngx_p3x_ctx_t *ctx, ngx_p3x_msg_t *msg, off_t lines)
{
    ctx->stream = ngx_p3x_stream_body;
    ctx->body_msg = msg;
    ctx->body_offset = 0;
    ctx->body_bol = 1;
    ctx->body_cr = 0;
    ctx->body_blank = 0;
    ctx->body_in_header = (lines >= 0);
    ctx->body_bare_lf = 0;
    ctx->top_lines = lines;
    ctx->body_pending = 0;
    ctx->body_rest.len = 0;
}


/*
 * The next chunk is asked for as soon as the buffer has room for it,
 * while the one before is still going out: Redis and the client work at
 * the same time, and a slow client still holds two chunks at most.
 */

static ngx_int_t
ngx_p3x_body_next(ngx_p3x_ctx_t *ctx)
{
    size_t          room, len;
    ngx_int_t       rc;
    ngx_buf_t      *b;
    ngx_p3x_msg_t  *msg;

    b = ctx->out;
    msg = ctx->body_msg;

    if ((size_t) (b->end - b->start) < ngx_p3x_out_body_size(ctx)) {

        /* replies before the body go out first, then the buffer grows */

        if (b->last > b->pos) {
            return NGX_AGAIN;
        }

        if (ngx_p3x_out_alloc(ctx, ngx_p3x_out_body_size(ctx)) != NGX_OK) {
            ctx->end_reason = "out of memory";
            return NGX_ERROR;
        }

        b = ctx->out;
    }

    /* what did not fit before goes first */

    rc = ngx_p3x_body_copy_rest(ctx);

    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx->body_offset >= (off_t) msg->size
        || (ctx->top_lines == 0 && !ctx->body_in_header))
    {
        return ngx_p3x_body_end(ctx);
    }

    if (b->last > b->pos && ngx_p3x_out_flush(ctx) == NGX_ERROR) {
        return NGX_ERROR;
    }

    room = ngx_p3x_out_chunk_room(ctx);

    if ((size_t) (b->end - b->last) < room && b->pos > b->start) {
        b->last = ngx_movemem(b->start, b->pos, b->last - b->pos);
        b->pos = b->start;
    }

    if ((size_t) (b->end - b->last) < room) {
        return NGX_AGAIN;
    }

    len = ngx_min(ctx->conf->chunk_size,
                  (size_t) (msg->size - ctx->body_offset));

    if (ngx_p3x_store_fetch(ctx, msg, ctx->body_offset, len,
                            ngx_p3x_body_chunk)
        != NGX_OK)
    {
        if (ctx->body_offset) {
            /* the reply is half sent: only closing can end it */
            ctx->end_reason = "message unavailable";
            return NGX_ERROR;
        }

        ctx->stream = ngx_p3x_stream_none;
        ngx_p3x_out_literal(ctx,
                           "-ERR [SYS/TEMP] mail store unavailable" CRLF);
        return NGX_OK;
    }

    ctx->busy = 1;
    ctx->body_pending = 1;

    return NGX_AGAIN;
}


/*
 * Octets of a chunk that found no room: a body with bare LF line ends
 * grows more than the buffer allows for (each LF becomes CRLF, each
 * leading dot doubles), and the rest waits here until the client takes
 * what is in the buffer.
 */

static ngx_int_t
ngx_p3x_body_copy_rest(ngx_p3x_ctx_t *ctx)
{
    size_t      n;
    ngx_buf_t  *b;

    if (ctx->body_rest.len == 0) {
        return NGX_OK;
    }

    b = ctx->out;

    if (b->last > b->pos && b->pos > b->start) {
        b->last = ngx_movemem(b->start, b->pos, b->last - b->pos);
        b->pos = b->start;
    }

    n = ngx_p3x_out_body(ctx, ctx->body_rest.data, ctx->body_rest.len);

    ctx->body_rest.data += n;
    ctx->body_rest.len -= n;

    if (ctx->body_rest.len && !(ctx->top_lines == 0 && !ctx->body_in_header))
    {
        return NGX_AGAIN;
    }

    ctx->body_rest.len = 0;

    return NGX_OK;
}


/* the terminating line, once there is room for it */

static ngx_int_t
ngx_p3x_body_end(ngx_p3x_ctx_t *ctx)
{
    ngx_buf_t      *b;
    ngx_p3x_msg_t  *msg;

    b = ctx->out;
    msg = ctx->body_msg;

    if ((size_t) (b->end - b->last) < 5) {
        return NGX_AGAIN;
    }

    if (!ctx->body_bol) {
        b->last = ngx_cpymem(b->last, CRLF, 2);
    }

    b->last = ngx_cpymem(b->last, "." CRLF, 3);
    ctx->stream = ngx_p3x_stream_none;

    if (ctx->body_bare_lf) {
        ngx_log_error(NGX_LOG_WARN, ctx->connection->log, 0,
                      "pop3_ext: message %ui of \"%V\" is stored with bare "
                      "LF line ends, sent with CRLF (more octets than its "
                      "size says)", msg - ctx->msgs + 1, &ctx->mailbox);
    }

    if (ctx->top_lines < 0) {
        msg->retrieved = 1;
        ctx->retrieved++;
        ctx->retrieved_octets += msg->size;
        ctx->last = ngx_max(ctx->last, (ngx_uint_t) (msg - ctx->msgs + 1));
    }

    return NGX_OK;
}


static void
ngx_p3x_body_chunk(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_ctx_t *ctx = data;

    u_char         *p;
    size_t          len, want, n;
    ngx_p3x_msg_t  *msg;

    msg = ctx->body_msg;

    ctx->busy = 0;
    ctx->body_pending = 0;

    ngx_p3x_wake(ctx);

    want = ngx_min(ctx->conf->chunk_size,
                   (size_t) (msg->size - ctx->body_offset));

    if (reply == NULL || reply->type != REDIS_REPLY_STRING
        || reply->len == 0)
    {
        ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                      "pop3_ext: message %ui of \"%V\" is unavailable "
                      "at offset %O%s",
                      msg - ctx->msgs + 1, &ctx->mailbox, ctx->body_offset,
                      reply == NULL ? " (redis did not answer)" : "");

        if (ctx->body_offset) {
            /* the reply is half sent: only closing can end it */
            ctx->end_reason = "message unavailable";
            ctx->fatal = 1;
            return;
        }

        ctx->stream = ngx_p3x_stream_none;
        ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] message unavailable" CRLF);
        return;
    }

    /* never more than asked for */

    p = (u_char *) reply->str;
    len = ngx_min((size_t) reply->len, want);

    if (ctx->body_offset == 0) {
        if (ctx->top_lines < 0) {
            ngx_p3x_reply(ctx, "+OK %uD octets", msg->size);

        } else {
            ngx_p3x_out_literal(ctx, "+OK" CRLF);
        }
    }

    n = ngx_p3x_out_body(ctx, p, len);

    if (n < len && !(ctx->top_lines == 0 && !ctx->body_in_header)) {

        if (ctx->body_spill == NULL) {
            ctx->body_spill = ngx_alloc(ctx->conf->chunk_size,
                                        ctx->connection->log);
            if (ctx->body_spill == NULL) {
                ctx->end_reason = "out of memory";
                ctx->fatal = 1;
                return;
            }
        }

        ctx->body_rest.data = ngx_cpymem(ctx->body_spill, p + n, len - n)
                              - (len - n);
        ctx->body_rest.len = len - n;
    }

    ctx->body_offset += len;

    if (len < want) {
        /* the stored body is shorter than its index entry says */
        ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                      "pop3_ext: message %ui of \"%V\" has %O octets, "
                      "its index entry says %uD",
                      msg - ctx->msgs + 1, &ctx->mailbox,
                      ctx->body_offset, msg->size);

        ctx->body_offset = msg->size;
    }
}


void
ngx_p3x_dele(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    ngx_p3x_msg_t  *msg;

    msg = ngx_p3x_message(ctx, cmd, 1);

    if (msg == NULL) {
        return;
    }

    if (ngx_p3x_store_mark(ctx, msg, ngx_p3x_dele_marked) != NGX_OK) {
        ngx_p3x_out_literal(ctx,
                           "-ERR [SYS/TEMP] mail store unavailable" CRLF);
        return;
    }

    ctx->pending_msg = msg;
    ctx->busy = 1;
}


static void
ngx_p3x_dele_marked(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_ctx_t *ctx = data;

    ngx_p3x_msg_t  *msg;

    ctx->busy = 0;
    ngx_p3x_wake(ctx);

    msg = ctx->pending_msg;
    ctx->pending_msg = NULL;

    if (!ngx_p3x_mark_outcome(ctx, reply, status, "DELE")) {
        return;
    }

    msg->deleted = 1;
    ctx->ndeleted++;
    ctx->deleted_octets += msg->size;

    ngx_p3x_reply(ctx, "+OK message %ui deleted", msg - ctx->msgs + 1);
}


void
ngx_p3x_rset(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    if (ngx_p3x_extra_args(ctx, cmd)) {
        return;
    }

    if (ctx->ndeleted == 0) {
        ctx->last = 0;
        ngx_p3x_reply(ctx, "+OK maildrop has %ui messages (%O octets)",
                      ctx->nmsgs, ctx->octets);
        return;
    }

    if (ngx_p3x_store_mark(ctx, NULL, ngx_p3x_rset_cleared) != NGX_OK) {
        ngx_p3x_out_literal(ctx,
                           "-ERR [SYS/TEMP] mail store unavailable" CRLF);
        return;
    }

    ctx->busy = 1;
}


static void
ngx_p3x_rset_cleared(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_ctx_t *ctx = data;

    ngx_uint_t  i;

    ctx->busy = 0;
    ngx_p3x_wake(ctx);

    if (!ngx_p3x_mark_outcome(ctx, reply, status, "RSET")) {
        return;
    }

    for (i = 0; i < ctx->nmsgs; i++) {
        ctx->msgs[i].deleted = 0;
    }

    ctx->ndeleted = 0;
    ctx->deleted_octets = 0;
    ctx->last = 0;

    ngx_p3x_reply(ctx, "+OK maildrop has %ui messages (%O octets)",
                  ctx->nmsgs, ctx->octets);
}


/*
 * What a DELE or RSET did: true if it was applied; otherwise the error
 * reply is written, and an unknown outcome makes the session read the
 * marks back before its next command.
 */

static ngx_uint_t
ngx_p3x_mark_outcome(ngx_p3x_ctx_t *ctx, redisReply *reply,
    ngx_uint_t status, const char *what)
{
    if (status == NGX_P3X_REDIS_OK && reply->type == REDIS_REPLY_INTEGER) {
        return 1;
    }

    if (status == NGX_P3X_REDIS_OK && ngx_p3x_store_error(reply, "LOCKLOST"))
    {
        /* the session loop answers this command, and ends the session */
        ctx->lock_lost = 1;
        return 0;
    }

    if (status == NGX_P3X_REDIS_NOTRUN) {
        ngx_p3x_out_literal(ctx,
                           "-ERR [SYS/TEMP] mail store unavailable" CRLF);
        return 0;
    }

    if (status == NGX_P3X_REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                      "pop3_ext: %s in \"%V\": %*s", what, &ctx->mailbox,
                      reply->len, reply->str);
    }

    ngx_log_error(NGX_LOG_WARN, ctx->connection->log, 0,
                  "pop3_ext: %s in \"%V\": outcome unknown, the marks will "
                  "be read back", what, &ctx->mailbox);

    ctx->marks = ngx_p3x_marks_unknown;

    ngx_p3x_reply(ctx, "-ERR [SYS/TEMP] mail store did not answer, "
                       "%s may or may not have been applied", what);

    return 0;
}


/* the marks as Redis has them become the session's */

ngx_int_t
ngx_p3x_marks_read(ngx_p3x_ctx_t *ctx)
{
    if (ngx_p3x_store_marks(ctx, ngx_p3x_marks_done) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->marks = ngx_p3x_marks_reading;
    ctx->busy = 1;

    return NGX_OK;
}


static void
ngx_p3x_marks_done(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_ctx_t *ctx = data;

    ngx_int_t  rc;

    ctx->busy = 0;
    ngx_p3x_wake(ctx);

    if (status == NGX_P3X_REDIS_OK && ngx_p3x_store_error(reply, "LOCKLOST"))
    {
        ctx->lock_lost = 1;
        ctx->marks = ngx_p3x_marks_known;
        return;
    }

    rc = (status == NGX_P3X_REDIS_OK)
         ? ngx_p3x_store_marks_apply(ctx, reply) : NGX_DECLINED;

    if (rc != NGX_OK) {
        /* still unknown; the command waiting gets an error */
        ctx->marks = ngx_p3x_marks_failed;
        return;
    }

    ctx->marks = ngx_p3x_marks_known;

    ngx_log_error(NGX_LOG_NOTICE, ctx->connection->log, 0,
                  "pop3_ext: deletion marks of \"%V\" read back: %ui marked",
                  &ctx->mailbox, ctx->ndeleted);
}


void
ngx_p3x_last(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    if (ngx_p3x_extra_args(ctx, cmd)) {
        return;
    }

    ngx_p3x_reply(ctx, "+OK %ui", ctx->last);
}


/*
 * QUIT in TRANSACTION: the UPDATE state.  Even with nothing deleted the
 * commit runs: it frees the lock before "+OK", so that a client that
 * logs in again at once is not [IN-USE].
 */

void
ngx_p3x_update(ngx_p3x_ctx_t *ctx)
{
    ctx->state = ngx_p3x_state_update;
    ctx->connection->log->action = "in update state";

    /* EXPIRE 0: what was retrieved goes too (_retention.c) */
    ctx->nforced = ngx_p3x_retention_forced(ctx);

    if (ngx_p3x_store_commit(ctx, ngx_p3x_committed) != NGX_OK) {
        ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] mail store unavailable, "
                                 "no message removed" CRLF);
        ctx->end_reason = "commit not sent";
        return;
    }

    ctx->busy = 1;
}


static void
ngx_p3x_committed(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_ctx_t *ctx = data;

    ctx->busy = 0;
    ngx_p3x_wake(ctx);

    if (status == NGX_P3X_REDIS_OK && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 2
        && reply->element[0]->type == REDIS_REPLY_INTEGER
        && reply->element[1]->type == REDIS_REPLY_INTEGER)
    {
        ctx->locked = 0;
        ctx->committed = 1;
        ctx->removed = (ngx_uint_t) reply->element[0]->integer;
        ctx->removed_octets = (off_t) reply->element[1]->integer;

        if (ctx->removed < ctx->ndeleted + ctx->nforced) {

            /*
             * Redis had lost some marks the session had acknowledged (a
             * failover without wait=): RFC 1939's answer for this
             */

            ngx_log_error(NGX_LOG_WARN, ctx->connection->log, 0,
                          "pop3_ext: commit of \"%V\" removed %ui of the %ui "
                          "messages marked in the session", &ctx->mailbox,
                          ctx->removed, ctx->ndeleted + ctx->nforced);

            ngx_p3x_reply(ctx, "-ERR [SYS/TEMP] some deleted messages not "
                          "removed: %ui of %ui removed, %ui messages left",
                          ctx->removed, ctx->ndeleted + ctx->nforced,
                          ctx->nmsgs - ctx->removed);
            ctx->end_reason = "some deleted messages not removed";
            return;
        }

        ngx_p3x_reply(ctx, "+OK bye, %ui messages left",
                      ctx->nmsgs - ctx->removed);
        return;
    }

    if (status == NGX_P3X_REDIS_OK && ngx_p3x_store_error(reply, "LOCKLOST"))
    {
        ctx->locked = 0;
        ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                      "pop3_ext: commit of \"%V\" refused: lock lost",
                      &ctx->mailbox);
        ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] maildrop lock lost, "
                                 "no message removed" CRLF);
        ctx->end_reason = "lock lost";
        return;
    }

    if (status == NGX_P3X_REDIS_NOTRUN) {
        ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                      "pop3_ext: commit of \"%V\" not sent: redis "
                      "unavailable", &ctx->mailbox);
        ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] mail store unavailable, "
                                 "no message removed" CRLF);
        ctx->end_reason = "commit not sent";
        return;
    }

    /* it may have run, or may still run: say so, claim nothing */

    ngx_log_error(NGX_LOG_ERR, ctx->connection->log, 0,
                  "pop3_ext: commit of \"%V\": outcome unknown (%s)",
                  &ctx->mailbox,
                  status == NGX_P3X_REDIS_UNACKED ? "replicas did not confirm"
                  : status == NGX_P3X_REDIS_OK ? "unexpected reply"
                  : "redis did not answer in time");

    ngx_p3x_out_literal(ctx, "-ERR [SYS/TEMP] the mail store did not confirm "
                             "the deletions; they may or may not have been "
                             "applied" CRLF);
    ctx->end_reason = "commit outcome unknown";
}
