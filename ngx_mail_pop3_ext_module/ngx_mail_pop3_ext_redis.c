
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * Redis connections owned by nginx: its events, timers and logging drive
 * the sockets, hiredis only encodes commands and decodes replies.  Each
 * worker keeps a few connections per configured Redis and pipelines the
 * requests of all its sessions over them; replies come back in order, so
 * a FIFO of requests per connection pairs them up.
 */


#include "ngx_mail_pop3_ext_module.h"


#define NGX_P3X_REDIS_BACKOFF_MIN   100
#define NGX_P3X_REDIS_BACKOFF_MAX   5000
#define NGX_P3X_REDIS_READ_SIZE     65536
#define NGX_P3X_REDIS_TRIES         3
#define NGX_P3X_REDIS_PENDING_MAX   65536


struct ngx_p3x_rreq_s {
    ngx_queue_t                queue;
    ngx_p3x_redis_handler_pt   handler;
    void                      *data;
    char                      *cmd;
    size_t                     len;
    ngx_int_t                  script;
    ngx_uint_t                 tries;
    unsigned                   retried:1;     /* after NOSCRIPT */
    unsigned                   durable:1;     /* nobody waits: retry */
};


struct ngx_p3x_rconn_s {
    ngx_p3x_redis_t           *redis;
    ngx_uint_t                 index;
    ngx_peer_connection_t      peer;
    redisReader               *reader;
    ngx_queue_t                pending;
    ngx_uint_t                 npending;

    u_char                    *out;
    size_t                     out_pos;
    size_t                     out_len;
    size_t                     out_size;

    ngx_event_t                reconnect;
    ngx_msec_t                 backoff;
    ngx_log_t                 *log;

    unsigned                   connecting:1;
    unsigned                   connected:1;
    unsigned                   auth_refused:1;
};


static void ngx_p3x_redis_connect(ngx_p3x_rconn_t *rc);
static ngx_int_t ngx_p3x_redis_auth(ngx_p3x_rconn_t *rc);
static void ngx_p3x_redis_authed(void *data, redisReply *reply);
static void ngx_p3x_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_p3x_redis_connected(ngx_p3x_rconn_t *rc);
static ngx_int_t ngx_p3x_redis_test_connect(ngx_connection_t *c);
static void ngx_p3x_redis_write_handler(ngx_event_t *wev);
static void ngx_p3x_redis_read_handler(ngx_event_t *rev);
static void ngx_p3x_redis_dispatch(ngx_p3x_rconn_t *rc, redisReply *reply);
static ngx_int_t ngx_p3x_redis_append(ngx_p3x_rconn_t *rc, char *cmd,
    size_t len);
static ngx_p3x_rreq_t *ngx_p3x_redis_request(ngx_p3x_rconn_t *rc, int argc,
    const char **argv, const size_t *argvlen);
static ngx_int_t ngx_p3x_redis_enqueue(ngx_p3x_rconn_t *rc,
    ngx_p3x_rreq_t *req);
static ngx_int_t ngx_p3x_redis_load_script(ngx_p3x_rconn_t *rc,
    ngx_int_t script);
static void ngx_p3x_redis_fail(ngx_p3x_rconn_t *rc, const char *why);
static void ngx_p3x_redis_close(ngx_p3x_rconn_t *rc);
static void ngx_p3x_redis_free_req(ngx_p3x_rreq_t *req);


ngx_int_t
ngx_p3x_redis_init_worker(ngx_cycle_t *cycle, ngx_p3x_redis_t *r)
{
    ngx_uint_t        i;
    ngx_p3x_rconn_t  *rc;

    r->conns = ngx_pcalloc(cycle->pool, r->nconns * sizeof(ngx_p3x_rconn_t));
    if (r->conns == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < r->nconns; i++) {
        rc = &r->conns[i];

        rc->redis = r;
        rc->index = i;
        rc->log = cycle->log;
        rc->backoff = NGX_P3X_REDIS_BACKOFF_MIN;
        ngx_queue_init(&rc->pending);

        rc->reconnect.handler = ngx_p3x_redis_reconnect_handler;
        rc->reconnect.data = rc;
        rc->reconnect.log = cycle->log;
        rc->reconnect.cancelable = 1;

        ngx_p3x_redis_connect(rc);
    }

    return NGX_OK;
}


/*
 * Queues a command.  Returns NGX_ERROR when no connection to this Redis is
 * up or coming up, so that the caller answers [SYS/TEMP] at once instead
 * of waiting; the handler is then never called.
 *
 * A command without a handler is cleanup nobody waits for (a lock
 * release, a slot returned): it waits for a connection that is down, and
 * is sent again when its connection fails, up to NGX_P3X_REDIS_TRIES
 * times, so that it is not lost to a passing outage.
 */

ngx_int_t
ngx_p3x_redis_send(ngx_p3x_redis_t *r, int argc, const char **argv,
    const size_t *argvlen, ngx_int_t script,
    ngx_p3x_redis_handler_pt handler, void *data)
{
    ngx_uint_t        i, n, first;
    ngx_p3x_rreq_t   *req;
    ngx_p3x_rconn_t  *rc;

    /*
     * The requests of one session (data) go over one connection while it
     * is up, so that Redis runs them in the order they were sent: a
     * RELEASE can never overtake the LOCK it undoes.
     */

    first = data ? ((uintptr_t) data >> 4) % r->nconns : r->next++;
    rc = NULL;

    for (i = 0; i < r->nconns; i++) {
        n = (first + i) % r->nconns;

        if (r->conns[n].connected || r->conns[n].connecting) {
            rc = &r->conns[n];
            break;
        }
    }

    if (rc == NULL) {
        if (handler || ngx_exiting || ngx_terminate || ngx_quit) {
            return NGX_ERROR;
        }

        rc = &r->conns[first % r->nconns];
    }

    /* a Redis that long stopped answering gets no more to hold */

    if (rc->npending >= NGX_P3X_REDIS_PENDING_MAX) {
        return NGX_ERROR;
    }

    req = ngx_p3x_redis_request(rc, argc, argv, argvlen);
    if (req == NULL) {
        return NGX_ERROR;
    }

    req->handler = handler;
    req->data = data;
    req->script = script;
    req->durable = (handler == NULL);

    if (ngx_p3x_redis_enqueue(rc, req) != NGX_OK) {
        ngx_p3x_redis_free_req(req);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_p3x_rreq_t *
ngx_p3x_redis_request(ngx_p3x_rconn_t *rc, int argc, const char **argv,
    const size_t *argvlen)
{
    int              len;
    char            *cmd;
    ngx_p3x_rreq_t  *req;

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        return NULL;
    }

    req = ngx_calloc(sizeof(ngx_p3x_rreq_t), rc->log);
    if (req == NULL) {
        redisFreeCommand(cmd);
        return NULL;
    }

    req->cmd = cmd;
    req->len = len;

    return req;
}


/* a session that goes away must not be called back */

void
ngx_p3x_redis_cancel(ngx_p3x_redis_t *r, void *data)
{
    ngx_uint_t        i;
    ngx_queue_t      *q;
    ngx_p3x_rreq_t   *req;
    ngx_p3x_rconn_t  *rc;

    if (r == NULL || r->conns == NULL) {
        return;
    }

    for (i = 0; i < r->nconns; i++) {
        rc = &r->conns[i];

        for (q = ngx_queue_head(&rc->pending);
             q != ngx_queue_sentinel(&rc->pending);
             q = ngx_queue_next(q))
        {
            req = ngx_queue_data(q, ngx_p3x_rreq_t, queue);

            if (req->data == data) {
                req->handler = NULL;
                req->data = NULL;
            }
        }
    }
}


static ngx_int_t
ngx_p3x_redis_enqueue(ngx_p3x_rconn_t *rc, ngx_p3x_rreq_t *req)
{
    if (ngx_p3x_redis_append(rc, req->cmd, req->len) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&rc->pending, &req->queue);
    rc->npending++;

    if (rc->connected) {
        if (!rc->peer.connection->read->timer_set) {
            ngx_add_timer(rc->peer.connection->read, rc->redis->timeout);
        }

        if (!rc->peer.connection->write->posted) {
            ngx_post_event(rc->peer.connection->write, &ngx_posted_events);
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_p3x_redis_append(ngx_p3x_rconn_t *rc, char *cmd, size_t len)
{
    u_char  *p;
    size_t   size;

    if (rc->out_pos == rc->out_len) {
        rc->out_pos = 0;
        rc->out_len = 0;
    }

    if (rc->out_len + len > rc->out_size) {

        if (rc->out_pos) {
            ngx_memmove(rc->out, rc->out + rc->out_pos,
                        rc->out_len - rc->out_pos);
            rc->out_len -= rc->out_pos;
            rc->out_pos = 0;
        }

        if (rc->out_len + len > rc->out_size) {
            size = ngx_max(rc->out_size * 2, rc->out_len + len);
            size = ngx_max(size, 4096);

            p = ngx_alloc(size, rc->log);
            if (p == NULL) {
                return NGX_ERROR;
            }

            if (rc->out) {
                ngx_memcpy(p, rc->out, rc->out_len);
                ngx_free(rc->out);
            }

            rc->out = p;
            rc->out_size = size;
        }
    }

    ngx_memcpy(rc->out + rc->out_len, cmd, len);
    rc->out_len += len;

    return NGX_OK;
}


static void
ngx_p3x_redis_connect(ngx_p3x_rconn_t *rc)
{
    ngx_int_t          rv;
    ngx_addr_t        *addr;
    ngx_connection_t  *c;
    ngx_p3x_redis_t   *r;

    r = rc->redis;
    addr = &r->addrs[rc->index % r->naddrs];

    ngx_memzero(&rc->peer, sizeof(ngx_peer_connection_t));

    rc->peer.sockaddr = addr->sockaddr;
    rc->peer.socklen = addr->socklen;
    rc->peer.name = &r->name;
    rc->peer.get = ngx_event_get_peer;
    rc->peer.log = rc->log;
    rc->peer.log_error = NGX_ERROR_ERR;

    rv = ngx_event_connect_peer(&rc->peer);

    if (rv == NGX_ERROR || rv == NGX_BUSY || rv == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "pop3_ext: cannot connect to redis %V", &r->name);

        if (rc->peer.connection) {
            ngx_close_connection(rc->peer.connection);
            rc->peer.connection = NULL;
        }

        ngx_add_timer(&rc->reconnect, rc->backoff);
        rc->backoff = ngx_min(rc->backoff * 2, NGX_P3X_REDIS_BACKOFF_MAX);
        return;
    }

    c = rc->peer.connection;
    c->data = rc;
    c->read->handler = ngx_p3x_redis_read_handler;
    c->write->handler = ngx_p3x_redis_write_handler;
    c->pool = NULL;

    rc->reader = redisReaderCreate();
    if (rc->reader == NULL || ngx_p3x_redis_auth(rc) != NGX_OK) {
        ngx_p3x_redis_fail(rc, "out of memory");
        return;
    }

    if (rv == NGX_AGAIN) {
        rc->connecting = 1;
        ngx_add_timer(c->write, r->timeout);
        return;
    }

    ngx_p3x_redis_connected(rc);
}


/*
 * With a password configured, AUTH goes first on every new connection,
 * ahead of whatever waited for it.  If Redis refuses it, the log says
 * why, the connection is dropped (the requests behind it fail, their
 * sessions answer [SYS/TEMP]) and tried again with the usual backoff.
 */

static ngx_int_t
ngx_p3x_redis_auth(ngx_p3x_rconn_t *rc)
{
    u_char           *p;
    size_t            argvlen[3], pending;
    ngx_uint_t        n;
    const char       *argv[3];
    ngx_p3x_rreq_t   *req;
    ngx_p3x_redis_t  *r;

    r = rc->redis;

    if (r->password.len == 0) {
        return NGX_OK;
    }

    n = 0;
    argv[n] = "AUTH";
    argvlen[n++] = 4;

    if (r->user.len) {
        argv[n] = (const char *) r->user.data;
        argvlen[n++] = r->user.len;
    }

    argv[n] = (const char *) r->password.data;
    argvlen[n++] = r->password.len;

    req = ngx_p3x_redis_request(rc, n, argv, argvlen);
    if (req == NULL) {
        return NGX_ERROR;
    }

    req->handler = ngx_p3x_redis_authed;
    req->data = rc;
    req->script = -1;

    /* the AUTH command goes before what is in the buffer already */

    pending = rc->out_len - rc->out_pos;

    p = ngx_alloc(ngx_max(req->len + pending, 4096), rc->log);
    if (p == NULL) {
        ngx_p3x_redis_free_req(req);
        return NGX_ERROR;
    }

    ngx_memcpy(p, req->cmd, req->len);

    if (pending) {
        ngx_memcpy(p + req->len, rc->out + rc->out_pos, pending);
    }

    if (rc->out) {
        ngx_free(rc->out);
    }

    rc->out = p;
    rc->out_pos = 0;
    rc->out_len = req->len + pending;
    rc->out_size = ngx_max(req->len + pending, 4096);

    ngx_queue_insert_head(&rc->pending, &req->queue);
    rc->npending++;

    return NGX_OK;
}


static void
ngx_p3x_redis_authed(void *data, redisReply *reply)
{
    ngx_p3x_rconn_t  *rc = data;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "pop3_ext: redis %V refused AUTH: %*s",
                      &rc->redis->name, reply->len, reply->str);
        rc->auth_refused = 1;
    }
}


static void
ngx_p3x_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_p3x_rconn_t  *rc;

    rc = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_p3x_redis_connect(rc);
}


static void
ngx_p3x_redis_connected(ngx_p3x_rconn_t *rc)
{
    ngx_connection_t  *c;

    c = rc->peer.connection;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (rc->backoff > NGX_P3X_REDIS_BACKOFF_MIN) {
        ngx_log_error(NGX_LOG_NOTICE, rc->log, 0,
                      "pop3_ext: connected to redis %V", &rc->redis->name);
    }

    rc->connecting = 0;
    rc->connected = 1;
    rc->backoff = NGX_P3X_REDIS_BACKOFF_MIN;

    if (rc->npending) {
        ngx_add_timer(c->read, rc->redis->timeout);
    }

    ngx_p3x_redis_write_handler(c->write);
}


static ngx_int_t
ngx_p3x_redis_test_connect(ngx_connection_t *c)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    /* a non-blocking connect() tells its outcome through SO_ERROR */

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        ngx_connection_error(c, err, "connect() to redis failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_p3x_redis_write_handler(ngx_event_t *wev)
{
    ssize_t            n;
    ngx_connection_t  *c;
    ngx_p3x_rconn_t   *rc;

    c = wev->data;
    rc = c->data;

    if (wev->timedout) {
        ngx_p3x_redis_fail(rc, "connect timed out");
        return;
    }

    if (rc->connecting) {
        if (ngx_p3x_redis_test_connect(c) != NGX_OK) {
            ngx_p3x_redis_fail(rc, "connect failed");
            return;
        }

        ngx_p3x_redis_connected(rc);
        return;
    }

    while (rc->out_pos < rc->out_len) {
        n = c->send(c, rc->out + rc->out_pos, rc->out_len - rc->out_pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_p3x_redis_fail(rc, "write event failed");
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_p3x_redis_fail(rc, "send failed");
            return;
        }

        rc->out_pos += n;
    }

    rc->out_pos = 0;
    rc->out_len = 0;

    /* a large idle buffer is returned; a small one is kept for reuse */

    if (rc->out_size > 65536) {
        ngx_free(rc->out);
        rc->out = NULL;
        rc->out_size = 0;
    }
}


static void
ngx_p3x_redis_read_handler(ngx_event_t *rev)
{
    ssize_t            n;
    void              *reply;
    ngx_connection_t  *c;
    ngx_p3x_rconn_t   *rc;

    static u_char      buf[NGX_P3X_REDIS_READ_SIZE];

    c = rev->data;
    rc = c->data;

    if (rev->timedout) {
        ngx_p3x_redis_fail(rc, "timed out waiting for a reply");
        return;
    }

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0) {
            ngx_p3x_redis_fail(rc, "connection closed by redis");
            return;
        }

        if (n == NGX_ERROR) {
            ngx_p3x_redis_fail(rc, "recv failed");
            return;
        }

        if (redisReaderFeed(rc->reader, (const char *) buf, n) != REDIS_OK) {
            ngx_p3x_redis_fail(rc, "reader out of memory");
            return;
        }

        for ( ;; ) {
            reply = NULL;

            if (redisReaderGetReply(rc->reader, &reply) != REDIS_OK) {
                ngx_p3x_redis_fail(rc, rc->reader->errstr);
                return;
            }

            if (reply == NULL) {
                break;
            }

            ngx_p3x_redis_dispatch(rc, reply);

            if (rc->auth_refused) {
                /* start over later: the password may have been changed */
                rc->auth_refused = 0;
                ngx_p3x_redis_fail(rc, "AUTH refused");
                return;
            }
        }

        if (rc->npending == 0) {
            if (rev->timer_set) {
                ngx_del_timer(rev);
            }

        } else {
            ngx_add_timer(rev, rc->redis->timeout);
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_p3x_redis_fail(rc, "read event failed");
    }
}


static void
ngx_p3x_redis_dispatch(ngx_p3x_rconn_t *rc, redisReply *reply)
{
    ngx_queue_t     *q;
    ngx_p3x_rreq_t  *req;

    if (ngx_queue_empty(&rc->pending)) {
        ngx_log_error(NGX_LOG_ALERT, rc->log, 0,
                      "pop3_ext: unexpected reply from redis %V",
                      &rc->redis->name);
        freeReplyObject(reply);
        return;
    }

    q = ngx_queue_head(&rc->pending);
    ngx_queue_remove(q);
    rc->npending--;

    req = ngx_queue_data(q, ngx_p3x_rreq_t, queue);

    /*
     * The script cache is empty after a restart or a failover: load the
     * script and send the same EVALSHA again, once, behind it.
     */

    if (reply->type == REDIS_REPLY_ERROR
        && req->script >= 0
        && !req->retried
        && reply->len >= 8
        && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0)
    {
        req->retried = 1;

        if (ngx_p3x_redis_load_script(rc, req->script) == NGX_OK
            && ngx_p3x_redis_enqueue(rc, req) == NGX_OK)
        {
            freeReplyObject(reply);
            return;
        }
    }

    if (reply->type == REDIS_REPLY_ERROR && req->script < 0
        && req->handler == NULL)
    {
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "pop3_ext: redis %V: %*s",
                      &rc->redis->name, reply->len, reply->str);
    }

    if (req->handler) {
        req->handler(req->data, reply);
    }

    freeReplyObject(reply);
    ngx_p3x_redis_free_req(req);
}


static ngx_int_t
ngx_p3x_redis_load_script(ngx_p3x_rconn_t *rc, ngx_int_t script)
{
    size_t            argvlen[3];
    const char       *argv[3];
    ngx_p3x_rreq_t   *req;

    argv[0] = "SCRIPT";
    argvlen[0] = 6;
    argv[1] = "LOAD";
    argvlen[1] = 4;
    argv[2] = (const char *) ngx_p3x_scripts[script].source.data;
    argvlen[2] = ngx_p3x_scripts[script].source.len;

    req = ngx_p3x_redis_request(rc, 3, argv, argvlen);
    if (req == NULL) {
        return NGX_ERROR;
    }

    req->script = -1;

    if (ngx_p3x_redis_enqueue(rc, req) != NGX_OK) {
        ngx_p3x_redis_free_req(req);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The connection is lost: every waiting session learns it at once (its
 * handler gets NULL), and a reconnect is tried after a growing pause.
 * The state is reset before the handlers run, so that they see this
 * connection as down.
 */

static void
ngx_p3x_redis_fail(ngx_p3x_rconn_t *rc, const char *why)
{
    ngx_queue_t      failed, *q, *next;
    ngx_p3x_rreq_t  *req;

    ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                  "pop3_ext: redis %V: %s, %ui request(s) failed",
                  &rc->redis->name, why, rc->npending);

    ngx_p3x_redis_close(rc);

    rc->out_pos = 0;
    rc->out_len = 0;

    ngx_queue_init(&failed);

    if (!ngx_queue_empty(&rc->pending)) {
        failed = rc->pending;
        failed.next->prev = &failed;
        failed.prev->next = &failed;
    }

    ngx_queue_init(&rc->pending);
    rc->npending = 0;

    if (!(ngx_exiting || ngx_terminate || ngx_quit)) {
        ngx_add_timer(&rc->reconnect, rc->backoff);
        rc->backoff = ngx_min(rc->backoff * 2, NGX_P3X_REDIS_BACKOFF_MAX);
    }

    /* cleanup commands wait for the next connection; the rest fail */

    for (q = ngx_queue_head(&failed);
         q != ngx_queue_sentinel(&failed);
         q = next)
    {
        next = ngx_queue_next(q);
        req = ngx_queue_data(q, ngx_p3x_rreq_t, queue);

        if (req->durable && ++req->tries < NGX_P3X_REDIS_TRIES
            && !(ngx_exiting || ngx_terminate || ngx_quit))
        {
            ngx_queue_remove(q);

            if (ngx_p3x_redis_enqueue(rc, req) != NGX_OK) {
                ngx_p3x_redis_free_req(req);
            }
        }
    }

    while (!ngx_queue_empty(&failed)) {
        q = ngx_queue_head(&failed);
        ngx_queue_remove(q);

        req = ngx_queue_data(q, ngx_p3x_rreq_t, queue);

        if (req->handler) {
            req->handler(req->data, NULL);
        }

        ngx_p3x_redis_free_req(req);
    }
}


void
ngx_p3x_redis_exit_worker(ngx_p3x_redis_t *r)
{
    ngx_uint_t        i;
    ngx_queue_t      *q;
    ngx_p3x_rreq_t   *req;
    ngx_p3x_rconn_t  *rc;

    if (r->conns == NULL) {
        return;
    }

    for (i = 0; i < r->nconns; i++) {
        rc = &r->conns[i];

        if (rc->reconnect.timer_set) {
            ngx_del_timer(&rc->reconnect);
        }

        ngx_p3x_redis_close(rc);

        while (!ngx_queue_empty(&rc->pending)) {
            q = ngx_queue_head(&rc->pending);
            ngx_queue_remove(q);

            req = ngx_queue_data(q, ngx_p3x_rreq_t, queue);
            ngx_p3x_redis_free_req(req);
        }

        if (rc->out) {
            ngx_free(rc->out);
            rc->out = NULL;
        }
    }
}


static void
ngx_p3x_redis_close(ngx_p3x_rconn_t *rc)
{
    if (rc->peer.connection) {
        ngx_close_connection(rc->peer.connection);
        rc->peer.connection = NULL;
    }

    if (rc->reader) {
        redisReaderFree(rc->reader);
        rc->reader = NULL;
    }

    rc->connected = 0;
    rc->connecting = 0;
}


static void
ngx_p3x_redis_free_req(ngx_p3x_rreq_t *req)
{
    redisFreeCommand(req->cmd);
    ngx_free(req);
}
