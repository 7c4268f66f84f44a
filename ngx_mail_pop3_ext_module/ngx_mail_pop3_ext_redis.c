
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * Redis connections owned by nginx: its events, timers and logging drive
 * the sockets (and its TLS, with "tls"), hiredis only encodes commands
 * and decodes replies.  Each worker keeps a few connections per Redis
 * server and pipelines the requests of all its sessions over them;
 * replies come back in order, so a FIFO per connection pairs them up.
 *
 * A request has a deadline of its own.  What its handler learns says
 * what happened, and so what may be told to a client:
 *
 *   NGX_P3X_REDIS_OK       Redis answered: the reply
 *   NGX_P3X_REDIS_NOTRUN   it never ran: nothing was ever sent, or
 *                          Redis refused to run it (MOVED, LOADING)
 *                          every time it was
 *   NGX_P3X_REDIS_UNKNOWN  it was sent and not answered in time, or its
 *                          connection broke: it may have run
 *   NGX_P3X_REDIS_UNACKED  it ran, but fewer replicas than wait= said so
 *
 * A request that has not run is sent again (another connection, a new
 * slot owner, a new master) until its deadline.  One that may have run is
 * sent again only if running it twice is harmless (idempotent).  A late
 * reply to a request whose deadline passed, or whose owner went away, is
 * read and dropped: the connection stays, so one slow script costs only
 * its own requests.  A connection is given up when it makes no progress
 * for three timeouts, and an idle one is checked with PING.
 *
 * Owners (sessions) keep a list of their requests: going away cancels
 * just those, and no handler ever runs for them after that.  Handlers are
 * called only from this client's event handlers and timers, never from
 * inside ngx_p3x_redis_call() or ngx_p3x_redis_cancel().
 */


#include "ngx_mail_pop3_ext_redis.h"


#define NGX_P3X_REDIS_BACKOFF_MIN   100
#define NGX_P3X_REDIS_BACKOFF_MAX   5000
#define NGX_P3X_REDIS_READ_SIZE     65536
#define NGX_P3X_REDIS_PENDING_MAX   65536
#define NGX_P3X_REDIS_KEEPALIVE     30000
#define NGX_P3X_REDIS_REDIRECTS     5


static ngx_int_t ngx_p3x_redis_format(ngx_p3x_rreq_t *req, int argc,
    const char **argv, const size_t *argvlen);
static ngx_p3x_rreq_t *ngx_p3x_redis_alloc(ngx_p3x_redis_t *r);
static void ngx_p3x_redis_deadline(ngx_event_t *ev);
static void ngx_p3x_redis_finish(ngx_p3x_rreq_t *req, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_redis_detach(ngx_p3x_rreq_t *req);
static void ngx_p3x_redis_unlink(ngx_p3x_rreq_t *req);
static ngx_int_t ngx_p3x_redis_wire(ngx_p3x_rreq_t *req);
static void ngx_p3x_redis_node_connect(ngx_p3x_rnode_t *node);
static void ngx_p3x_redis_node_fail_waiting(ngx_p3x_rnode_t *node);
static ngx_p3x_rconn_t *ngx_p3x_redis_node_conn(ngx_p3x_rnode_t *node,
    ngx_p3x_rreq_t *req);
static void ngx_p3x_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_p3x_redis_connected(ngx_p3x_rconn_t *rc);
static void ngx_p3x_redis_handshake(ngx_connection_t *c);
#if (NGX_SSL)
static ngx_uint_t ngx_p3x_redis_is_ip(ngx_str_t *name);
static ngx_int_t ngx_p3x_redis_check_name(ngx_connection_t *c,
    ngx_str_t *name);
#endif
static void ngx_p3x_redis_prepare(ngx_p3x_rconn_t *rc);
static void ngx_p3x_redis_prepared(void *data, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_redis_ready(ngx_p3x_rconn_t *rc);
static ngx_int_t ngx_p3x_redis_test_connect(ngx_connection_t *c);
static void ngx_p3x_redis_write_handler(ngx_event_t *wev);
static void ngx_p3x_redis_read_handler(ngx_event_t *rev);
static void ngx_p3x_redis_timer(ngx_p3x_rconn_t *rc);
static void ngx_p3x_redis_keepalive(ngx_p3x_rconn_t *rc);
static void ngx_p3x_redis_pong(void *data, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_redis_dispatch(ngx_p3x_rconn_t *rc, redisReply *reply);
static ngx_int_t ngx_p3x_redis_error_is(redisReply *reply,
    const char *prefix);
static void ngx_p3x_redis_reload(ngx_p3x_rconn_t *rc, ngx_int_t script);
static void ngx_p3x_redis_retry_handler(ngx_event_t *ev);


static u_char  ngx_p3x_redis_buf[NGX_P3X_REDIS_READ_SIZE];


/*
 * Queues a command.  NGX_ERROR: it cannot be sent (out of memory, too
 * much waiting, or the standalone Redis is known to be down), and the
 * handler will not be called: the caller answers [SYS/TEMP] at once.
 */

ngx_int_t
ngx_p3x_redis_call(ngx_p3x_rcall_t *call, int argc, const char **argv,
    const size_t *argvlen)
{
    ngx_msec_t               timeout;
    ngx_p3x_redis_t         *r;
    ngx_p3x_rreq_t          *req;
    ngx_p3x_redis_worker_t  *w;

    r = call->redis;
    w = r->worker;

    if (w == NULL) {
        return NGX_ERROR;
    }

    if (w->nparked >= NGX_P3X_REDIS_PENDING_MAX) {
        return NGX_ERROR;
    }

    req = ngx_p3x_redis_alloc(r);
    if (req == NULL) {
        return NGX_ERROR;
    }

    req->handler = call->handler;
    req->data = call->data;
    req->tag = call->tag;
    req->start = ngx_p3x_metrics_now();
    req->idempotent = call->idempotent;
    req->ack = call->ack && r->wait > 0;
    req->script = call->script;
    req->affinity = call->affinity ? call->affinity : w->next++;

    if (call->key > 0 && call->key < argc && r->mode == NGX_P3X_REDIS_CLUSTER)
    {
        req->slot = ngx_p3x_redis_key_slot((u_char *) argv[call->key],
                                           argvlen[call->key]);
    }

    if (ngx_p3x_redis_format(req, argc, argv, argvlen) != NGX_OK) {
        ngx_p3x_redis_free_req(req);
        return NGX_ERROR;
    }

    timeout = call->timeout ? call->timeout : r->timeout;

    if (call->owner) {
        req->owner = call->owner;
        ngx_queue_insert_tail(call->owner, &req->owned);
    }

    ngx_add_timer(&req->timer, timeout);

    /* a standalone Redis known to be down answers at once */

    if (r->mode == NGX_P3X_REDIS_SINGLE && req->handler
        && w->master->failures > 0)
    {
        req->node = w->master;
        ngx_p3x_metrics_redis_done(req, NGX_P3X_REDIS_NOTRUN);

        ngx_p3x_redis_detach(req);
        ngx_p3x_redis_free_req(req);
        return NGX_ERROR;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, w->log, 0,
                   "pop3_ext redis: request %p \"%*s\" slot %i",
                   req, ngx_min(argvlen[0], 16), argv[0], req->slot);

    ngx_p3x_redis_route(req);

    return NGX_OK;
}


/*
 * EVALSHA of one of ngx_p3x_scripts[].  The first key routes it: all keys
 * of one script share a hash tag, and so a slot.
 */

ngx_int_t
ngx_p3x_redis_eval(ngx_p3x_rcall_t *call, ngx_uint_t nkeys,
    const char **keys, const size_t *keyslen, ngx_uint_t nargs,
    const char **args, const size_t *argslen)
{
    u_char       numkeys[NGX_INT_T_LEN];
    size_t      *argvlen, lens[16];
    ngx_int_t    rc;
    ngx_uint_t   i, n, total;
    const char **argv, *vals[16];

    total = 3 + nkeys + nargs;

    if (total <= 16) {
        argv = vals;
        argvlen = lens;

    } else {
        argv = ngx_alloc(total * (sizeof(char *) + sizeof(size_t)),
                         ngx_cycle->log);
        if (argv == NULL) {
            return NGX_ERROR;
        }

        argvlen = (size_t *) (argv + total);
    }

    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = (const char *) ngx_p3x_scripts[call->script].sha1;
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

    call->key = nkeys ? 3 : 0;

    rc = ngx_p3x_redis_call(call, (int) n, argv, argvlen);

    if (argv != vals) {
        ngx_free(argv);
    }

    return rc;
}


/*
 * An owner that goes away: its requests that have not been sent are
 * dropped, those on the wire are read and dropped when they answer.
 * Only the owner's own requests are visited.
 */

void
ngx_p3x_redis_cancel(ngx_queue_t *owner, ngx_uint_t tag)
{
    ngx_queue_t     *q, *next;
    ngx_p3x_rreq_t  *req;

    if (owner->next == NULL) {
        return;                     /* never initialised */
    }

    for (q = ngx_queue_head(owner);
         q != ngx_queue_sentinel(owner);
         q = next)
    {
        next = ngx_queue_next(q);
        req = ngx_queue_data(q, ngx_p3x_rreq_t, owned);

        if (tag != NGX_P3X_TAG_ANY && req->tag != tag) {
            continue;
        }

        ngx_p3x_redis_detach(req);

        if (req->where != ngx_p3x_rreq_sent
            && !(req->where == ngx_p3x_rreq_sending
                 && req->buf.pos != req->buf.start))
        {
            ngx_p3x_redis_unlink(req);
            ngx_p3x_redis_free_req(req);
        }
    }
}


/* the owner and the handler go; the request may stay on the wire */

static void
ngx_p3x_redis_detach(ngx_p3x_rreq_t *req)
{
    if (req->owner) {
        ngx_queue_remove(&req->owned);
        req->owner = NULL;
    }

    req->handler = NULL;
    req->data = NULL;

    if (req->timer.timer_set) {
        ngx_del_timer(&req->timer);
    }
}


/* out of whatever queue holds it, before it is sent */

static void
ngx_p3x_redis_unlink(ngx_p3x_rreq_t *req)
{
    ngx_p3x_redis_worker_t  *w;

    switch (req->where) {

    case ngx_p3x_rreq_parked:
        w = req->redis->worker;
        ngx_queue_remove(&req->queue);
        w->nparked--;
        break;

    case ngx_p3x_rreq_waiting:
        ngx_queue_remove(&req->queue);
        req->node->nwaiting--;
        break;

    case ngx_p3x_rreq_sending:
        ngx_queue_remove(&req->queue);
        req->conn->nsendq--;
        break;

    case ngx_p3x_rreq_sent:
        ngx_queue_remove(&req->queue);
        req->conn->ninflight--;
        break;

    default:
        break;
    }

    req->where = ngx_p3x_rreq_none;
}


static ngx_p3x_rreq_t *
ngx_p3x_redis_alloc(ngx_p3x_redis_t *r)
{
    ngx_p3x_rreq_t  *req;

    req = ngx_calloc(sizeof(ngx_p3x_rreq_t), ngx_cycle->log);
    if (req == NULL) {
        return NULL;
    }

    req->redis = r;
    req->script = -1;
    req->slot = -1;

    req->timer.handler = ngx_p3x_redis_deadline;
    req->timer.data = req;
    req->timer.log = ngx_cycle->log;
    req->timer.cancelable = 1;

    return req;
}


/* a request of the client itself: AUTH, SCRIPT LOAD, PING, ROLE... */

ngx_p3x_rreq_t *
ngx_p3x_redis_internal(ngx_p3x_redis_t *r, int argc, const char **argv,
    const size_t *argvlen, ngx_p3x_redis_handler_pt handler, void *data)
{
    ngx_p3x_rreq_t  *req;

    req = ngx_p3x_redis_alloc(r);
    if (req == NULL) {
        return NULL;
    }

    req->internal = 1;
    req->handler = handler;
    req->data = data;

    if (ngx_p3x_redis_format(req, argc, argv, argvlen) != NGX_OK) {
        ngx_p3x_redis_free_req(req);
        return NULL;
    }

    return req;
}


static ngx_int_t
ngx_p3x_redis_format(ngx_p3x_rreq_t *req, int argc, const char **argv,
    const size_t *argvlen)
{
    int    len;
    char  *cmd;

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        return NGX_ERROR;
    }

    /* nginx's allocator from here on: one way to free it */

    req->cmd = ngx_alloc(len, ngx_cycle->log);
    if (req->cmd == NULL) {
        redisFreeCommand(cmd);
        return NGX_ERROR;
    }

    ngx_memcpy(req->cmd, cmd, len);
    req->cmd_len = len;
    redisFreeCommand(cmd);

    return ngx_p3x_redis_wire(req);
}


/*
 * What goes on the wire: "ASKING" before the command after an ASK
 * redirection, "WAIT N ms" after an acknowledged write.  They are part of
 * the request, so they are always adjacent to it on one connection, and
 * the request takes their replies too.
 */

static ngx_int_t
ngx_p3x_redis_wire(ngx_p3x_rreq_t *req)
{
    u_char           *p, *q;
    size_t            len, wait_len;
    ngx_p3x_redis_t  *r;
    u_char            n[NGX_INT_T_LEN], t[NGX_INT_T_LEN], wait[128];

    static u_char     asking[] = "*1\r\n$6\r\nASKING\r\n";

    r = req->redis;

    if (req->wire && req->wire != req->cmd) {
        ngx_free(req->wire);
    }

    req->wire = NULL;
    wait_len = 0;

    if (req->ack) {
        len = ngx_sprintf(n, "%ui", r->wait) - n;
        p = ngx_sprintf(t, "%M", r->wait_timeout);

        wait_len = ngx_sprintf(wait, "*3\r\n$4\r\nWAIT\r\n$%uz\r\n%*s\r\n"
                               "$%uz\r\n%*s\r\n", len, len, n,
                               (size_t) (p - t), (size_t) (p - t), t)
                   - wait;
    }

    if (!req->asking && wait_len == 0) {
        req->wire = req->cmd;
        len = req->cmd_len;

    } else {
        len = (req->asking ? sizeof(asking) - 1 : 0) + req->cmd_len
              + wait_len;

        req->wire = ngx_alloc(len, ngx_cycle->log);
        if (req->wire == NULL) {
            return NGX_ERROR;
        }

        q = req->wire;

        if (req->asking) {
            q = ngx_cpymem(q, asking, sizeof(asking) - 1);
        }

        q = ngx_cpymem(q, req->cmd, req->cmd_len);
        ngx_memcpy(q, wait, wait_len);
    }

    req->waited = (wait_len > 0);
    req->replies = 1 + req->asking + req->waited;

    ngx_memzero(&req->buf, sizeof(ngx_buf_t));
    req->buf.start = req->wire;
    req->buf.pos = req->wire;
    req->buf.last = req->wire + len;
    req->buf.end = req->wire + len;
    req->buf.memory = 1;

    /* TLS with NGX_SSL_BUFFER holds back what is not marked for flushing */
    req->buf.flush = 1;

    req->chain.buf = &req->buf;
    req->chain.next = NULL;

    return NGX_OK;
}


void
ngx_p3x_redis_free_req(ngx_p3x_rreq_t *req)
{
    if (req->timer.timer_set) {
        ngx_del_timer(&req->timer);
    }

    if (req->reply) {
        freeReplyObject(req->reply);
    }

    if (req->wire && req->wire != req->cmd) {
        ngx_free(req->wire);
    }

    if (req->cmd) {
        ngx_free(req->cmd);
    }

    ngx_free(req);
}


/*
 * A request that did not run, or may run twice, goes again: from its
 * first octet, to the node an ASK named (once), or where it belongs now,
 * or (later) parked for a moment.
 */

void
ngx_p3x_redis_again(ngx_p3x_rreq_t *req, ngx_p3x_rnode_t *ask,
    ngx_uint_t later)
{
    ngx_uint_t  asking;

    if (req->reply) {
        freeReplyObject(req->reply);
        req->reply = NULL;
    }

    asking = (ask != NULL);
    req->ask = ask;
    req->conn = NULL;
    req->where = ngx_p3x_rreq_none;

    if (asking != req->asking || req->buf.pos != req->buf.start
        || req->replies != (ngx_uint_t) (1 + req->asking + req->waited))
    {
        req->asking = asking;

        if (ngx_p3x_redis_wire(req) != NGX_OK) {
            ngx_p3x_redis_finish(req, NULL, req->sent
                                            ? NGX_P3X_REDIS_UNKNOWN
                                            : NGX_P3X_REDIS_NOTRUN);
            return;
        }
    }

    if (later) {
        ngx_p3x_redis_park(req);
        return;
    }

    ngx_p3x_redis_route(req);
}


/* the handler, once; the request is freed */

static void
ngx_p3x_redis_finish(ngx_p3x_rreq_t *req, redisReply *reply,
    ngx_uint_t status)
{
    void                      *data;
    ngx_p3x_redis_handler_pt   handler;

    handler = req->handler;
    data = req->data;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "pop3_ext redis: request %p done, status %ui, reply %d",
                   req, status, reply ? reply->type : -1);

    ngx_p3x_metrics_redis_done(req, status);

    ngx_p3x_redis_detach(req);
    ngx_p3x_redis_unlink(req);
    ngx_p3x_redis_free_req(req);

    if (handler) {
        handler(data, reply, status);
    }
}


/*
 * The deadline: a request not sent yet has not run; one on the wire may
 * have, and its late reply will be dropped.
 */

static void
ngx_p3x_redis_deadline(ngx_event_t *ev)
{
    void                      *data;
    ngx_p3x_rreq_t            *req;
    ngx_p3x_redis_handler_pt   handler;

    req = ev->data;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ev->log, 0,
                   "pop3_ext redis: request %p timed out, where %d",
                   req, req->where);

    if (req->handler == NULL && !req->internal) {
        ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                      "pop3_ext: redis %V did not take a cleanup request "
                      "in time", &req->redis->name);
    }

    if (req->where == ngx_p3x_rreq_sent
        || (req->where == ngx_p3x_rreq_sending
            && req->buf.pos != req->buf.start))
    {
        /* on the wire: it stays there, its reply will be dropped */

        handler = req->handler;
        data = req->data;

        ngx_p3x_metrics_redis_done(req, NGX_P3X_REDIS_UNKNOWN);

        ngx_p3x_redis_detach(req);

        if (handler) {
            handler(data, NULL, NGX_P3X_REDIS_UNKNOWN);
        }

        return;
    }

    /* sent once before it was requeued: it may have run */

    ngx_p3x_redis_finish(req, NULL, req->sent ? NGX_P3X_REDIS_UNKNOWN
                                              : NGX_P3X_REDIS_NOTRUN);
}


/*
 * Sends a request where it belongs now: to a ready connection of its
 * node, to the node's waiting queue while the node connects, or parked
 * until the topology says where it goes.
 */

void
ngx_p3x_redis_route(ngx_p3x_rreq_t *req)
{
    ngx_p3x_rnode_t          *node;
    ngx_p3x_rconn_t          *rc;

    node = req->ask ? req->ask : ngx_p3x_redis_target(req);

    if (node == NULL) {
        ngx_p3x_redis_park(req);
        return;
    }

    req->node = node;

    rc = ngx_p3x_redis_node_conn(node, req);

    if (rc) {
        ngx_p3x_redis_conn_push(rc, req);
        return;
    }

    ngx_queue_insert_tail(&node->waiting, &req->queue);
    node->nwaiting++;
    req->where = ngx_p3x_rreq_waiting;

    ngx_p3x_redis_node_connect(node);
}


/* a request with no route yet: tried again when the topology changes */

void
ngx_p3x_redis_park(ngx_p3x_rreq_t *req)
{
    ngx_p3x_redis_worker_t  *w;

    w = req->redis->worker;

    ngx_queue_insert_tail(&w->parked, &req->queue);
    w->nparked++;
    req->where = ngx_p3x_rreq_parked;
    req->node = NULL;

    if (!w->retry.timer_set) {
        ngx_add_timer(&w->retry, w->retry_backoff);
        w->retry_backoff = ngx_min(w->retry_backoff * 2,
                                   NGX_P3X_REDIS_BACKOFF_MAX / 5);
    }
}


void
ngx_p3x_redis_unpark(ngx_p3x_redis_t *r)
{
    ngx_queue_t              parked, *q;
    ngx_p3x_rreq_t          *req;
    ngx_p3x_redis_worker_t  *w;

    w = r->worker;

    if (w->nparked == 0) {
        return;
    }

    /* those that find no route again are parked anew, behind */

    ngx_queue_init(&parked);
    ngx_queue_add(&parked, &w->parked);
    ngx_queue_init(&w->parked);
    w->nparked = 0;

    while (!ngx_queue_empty(&parked)) {
        q = ngx_queue_head(&parked);
        ngx_queue_remove(q);

        req = ngx_queue_data(q, ngx_p3x_rreq_t, queue);
        req->where = ngx_p3x_rreq_none;

        ngx_p3x_redis_route(req);
    }
}


static void
ngx_p3x_redis_retry_handler(ngx_event_t *ev)
{
    ngx_p3x_redis_t         *r;
    ngx_p3x_redis_worker_t  *w;

    r = ev->data;
    w = r->worker;

    if (w->nparked == 0) {
        w->retry_backoff = NGX_P3X_REDIS_BACKOFF_MIN;
        return;
    }

    ngx_p3x_redis_topology_changed(r, NULL);
    ngx_p3x_redis_unpark(r);
}


/*
 * One connection of a node for a request: the same one for all the
 * requests of one owner, so that Redis runs them in the order they were
 * sent; acknowledged writes use a connection of their own, so that WAIT
 * holds up nobody else.  NULL when that connection is not ready.
 */

static ngx_p3x_rconn_t *
ngx_p3x_redis_node_conn(ngx_p3x_rnode_t *node, ngx_p3x_rreq_t *req)
{
    ngx_uint_t        i, n, nconns;
    ngx_p3x_rconn_t  *rc;

    nconns = node->redis->nconns;

    if (req->ack) {
        rc = &node->conns[nconns];
        return rc->state == ngx_p3x_rconn_ready ? rc : NULL;
    }

    n = (req->affinity >> 4) % nconns;
    rc = &node->conns[n];

    if (rc->state == ngx_p3x_rconn_ready) {
        return rc;
    }

    /* while its connection comes back, another one will do */

    if (rc->state == ngx_p3x_rconn_down) {
        for (i = 1; i < nconns; i++) {
            rc = &node->conns[(n + i) % nconns];

            if (rc->state == ngx_p3x_rconn_ready) {
                return rc;
            }
        }
    }

    return NULL;
}


/* appends a request to a ready connection's send queue */

void
ngx_p3x_redis_conn_push(ngx_p3x_rconn_t *rc, ngx_p3x_rreq_t *req)
{
    ngx_connection_t  *c;

    ngx_queue_insert_tail(&rc->sendq, &req->queue);
    rc->nsendq++;
    req->where = ngx_p3x_rreq_sending;
    req->conn = rc;
    req->node = rc->node;

    c = rc->peer.connection;

    if (c && !c->write->posted
        && (rc->state == ngx_p3x_rconn_ready
            || rc->state == ngx_p3x_rconn_preparing))
    {
        /* all requests of this event loop iteration go in one send */
        ngx_post_event(c->write, &ngx_posted_events);
    }
}


/* a node (found or created) for an address, worker-wide */

ngx_p3x_rnode_t *
ngx_p3x_redis_node(ngx_p3x_redis_t *r, ngx_addr_t *addr, ngx_str_t *name)
{
    ngx_uint_t               i, n;
    ngx_p3x_rnode_t         *node, **np;
    ngx_p3x_redis_worker_t  *w;

    w = r->worker;
    np = w->nodes.elts;

    for (i = 0; i < w->nodes.nelts; i++) {
        node = np[i];

        if (ngx_cmp_sockaddr(node->addr.sockaddr, node->addr.socklen,
                             addr->sockaddr, addr->socklen, 1)
            == NGX_OK)
        {
            node->retired = 0;
            return node;
        }
    }

    node = ngx_pcalloc(w->pool, sizeof(ngx_p3x_rnode_t));
    if (node == NULL) {
        return NULL;
    }

    node->redis = r;
    node->backoff = NGX_P3X_REDIS_BACKOFF_MIN;
    ngx_queue_init(&node->waiting);

    node->addr.socklen = addr->socklen;
    node->addr.sockaddr = ngx_palloc(w->pool, addr->socklen);
    node->name.data = ngx_pnalloc(w->pool, name->len);

    if (node->addr.sockaddr == NULL || node->name.data == NULL) {
        return NULL;
    }

    ngx_memcpy(node->addr.sockaddr, addr->sockaddr, addr->socklen);
    ngx_memcpy(node->name.data, name->data, name->len);
    node->name.len = name->len;
    node->addr.name = node->name;

    /* the TLS name: the host part of "host:port" */

    node->host = node->name;

    if (node->host.len && node->host.data[0] == '[') {
        node->host.data++;
        node->host.len--;
        n = 0;

        while (n < node->host.len && node->host.data[n] != ']') {
            n++;
        }

        node->host.len = n;

    } else {
        for (n = node->host.len; n > 0; n--) {
            if (node->host.data[n - 1] == ':') {
                node->host.len = n - 1;
                break;
            }
        }
    }

    n = r->nconns + (r->wait ? 1 : 0);

    node->nconns = n;
    node->conns = ngx_pcalloc(w->pool, n * sizeof(ngx_p3x_rconn_t));
    if (node->conns == NULL) {
        return NULL;
    }

    for (i = 0; i < n; i++) {
        node->conns[i].node = node;
        node->conns[i].index = i;
        node->conns[i].log = w->log;
        ngx_queue_init(&node->conns[i].sendq);
        ngx_queue_init(&node->conns[i].inflight);

        node->conns[i].reconnect.handler = ngx_p3x_redis_reconnect_handler;
        node->conns[i].reconnect.data = &node->conns[i];
        node->conns[i].reconnect.log = w->log;
        node->conns[i].reconnect.cancelable = 1;
    }

    np = ngx_array_push(&w->nodes);
    if (np == NULL) {
        return NULL;
    }

    *np = node;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, w->log, 0,
                   "pop3_ext redis: new node %V", &node->name);

    return node;
}


/*
 * A node that left the topology (an old master): its connections close,
 * and what waited for it or was on its wire finds its way again.
 */

void
ngx_p3x_redis_node_retire(ngx_p3x_rnode_t *node)
{
    ngx_uint_t        i;
    ngx_queue_t      *q;
    ngx_p3x_rreq_t   *req;
    ngx_p3x_rconn_t  *rc;

    node->retired = 1;

    for (i = 0; i < node->nconns; i++) {
        rc = &node->conns[i];

        if (rc->reconnect.timer_set) {
            ngx_del_timer(&rc->reconnect);
        }

        if (rc->state != ngx_p3x_rconn_down) {
            ngx_p3x_redis_conn_fail(rc, "node left the topology");

            if (rc->reconnect.timer_set) {
                ngx_del_timer(&rc->reconnect);
            }
        }
    }

    while (!ngx_queue_empty(&node->waiting)) {
        q = ngx_queue_head(&node->waiting);
        req = ngx_queue_data(q, ngx_p3x_rreq_t, queue);

        ngx_p3x_redis_unlink(req);
        ngx_p3x_redis_park(req);
    }
}


/*
 * Connections are opened from a posted event, never from inside a call:
 * a connect that fails at once must not run handlers under the caller.
 */

static void
ngx_p3x_redis_node_connect(ngx_p3x_rnode_t *node)
{
    ngx_uint_t        i;
    ngx_p3x_rconn_t  *rc;

    if (node->retired) {
        return;
    }

    for (i = 0; i < node->nconns; i++) {
        rc = &node->conns[i];

        if (rc->state == ngx_p3x_rconn_down && !rc->reconnect.timer_set
            && !rc->reconnect.posted)
        {
            ngx_post_event(&rc->reconnect, &ngx_posted_events);
        }
    }
}


/* a standalone Redis that cannot be reached: who waits learns it now */

static void
ngx_p3x_redis_node_fail_waiting(ngx_p3x_rnode_t *node)
{
    ngx_queue_t     *q, *next;
    ngx_p3x_rreq_t  *req;

    for (q = ngx_queue_head(&node->waiting);
         q != ngx_queue_sentinel(&node->waiting);
         q = next)
    {
        next = ngx_queue_next(q);
        req = ngx_queue_data(q, ngx_p3x_rreq_t, queue);

        /* cleanup nobody waits for stays for the next connection */

        if (req->handler) {
            ngx_p3x_redis_finish(req, NULL, req->sent
                                            ? NGX_P3X_REDIS_UNKNOWN
                                            : NGX_P3X_REDIS_NOTRUN);
        }
    }
}


/*
 * What waited for this node goes where it belongs now: to a ready
 * connection of the node, or, after the topology changed, elsewhere.
 */

void
ngx_p3x_redis_node_drain(ngx_p3x_rnode_t *node)
{
    ngx_queue_t      waiting, *q;
    ngx_p3x_rreq_t  *req;

    if (node->nwaiting == 0) {
        return;
    }

    ngx_queue_init(&waiting);
    ngx_queue_add(&waiting, &node->waiting);
    ngx_queue_init(&node->waiting);
    node->nwaiting = 0;

    while (!ngx_queue_empty(&waiting)) {
        q = ngx_queue_head(&waiting);
        ngx_queue_remove(q);

        req = ngx_queue_data(q, ngx_p3x_rreq_t, queue);
        req->where = ngx_p3x_rreq_none;

        ngx_p3x_redis_route(req);
    }
}


void
ngx_p3x_redis_conn_start(ngx_p3x_rconn_t *rc, ngx_addr_t *addr)
{
    ngx_int_t          rv;
    ngx_connection_t  *c;
    ngx_p3x_redis_t   *r;

    r = rc->node ? rc->node->redis : NULL;

    if (r == NULL) {
        return;
    }

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_memzero(&rc->peer, sizeof(ngx_peer_connection_t));

    rc->peer.sockaddr = addr->sockaddr;
    rc->peer.socklen = addr->socklen;
    rc->peer.name = &addr->name;
    rc->peer.get = ngx_event_get_peer;
    rc->peer.log = rc->log;
    rc->peer.log_error = NGX_ERROR_ERR;
    rc->peer.so_keepalive = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, rc->log, 0,
                   "pop3_ext redis: connecting to %V, connection %ui",
                   &addr->name, rc->index);

    rv = ngx_event_connect_peer(&rc->peer);

    if (rv == NGX_ERROR || rv == NGX_BUSY || rv == NGX_DECLINED) {
        if (rc->peer.connection) {
            ngx_close_connection(rc->peer.connection);
            rc->peer.connection = NULL;
        }

        rc->state = ngx_p3x_rconn_connecting;
        ngx_p3x_redis_conn_fail(rc, "cannot connect");
        return;
    }

    c = rc->peer.connection;
    c->data = rc;
    c->read->handler = ngx_p3x_redis_read_handler;
    c->write->handler = ngx_p3x_redis_write_handler;
    c->pool = NULL;

    /* a worker that shuts down waits for its sessions, not for these */
    c->read->cancelable = 1;
    c->write->cancelable = 1;

    rc->reader = redisReaderCreate();
    if (rc->reader == NULL) {
        rc->state = ngx_p3x_rconn_connecting;
        ngx_p3x_redis_conn_fail(rc, "out of memory");
        return;
    }

    rc->state = ngx_p3x_rconn_connecting;

    if (rv == NGX_AGAIN) {
        ngx_add_timer(c->write, r->timeout);
        return;
    }

    ngx_p3x_redis_connected(rc);
}


static void
ngx_p3x_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_p3x_rconn_t  *rc;

    rc = ev->data;

    if (rc->sentinel) {
        ngx_p3x_redis_topology_changed(rc->node->redis, NULL);
        return;
    }

    if (rc->node->retired || rc->state != ngx_p3x_rconn_down) {
        return;
    }

    /* a cluster node that owns no slot any more is left alone */

    if (rc->node->redis->mode == NGX_P3X_REDIS_CLUSTER
        && rc->node->redis->worker->mapped
        && rc->node->nslots == 0 && rc->node->nwaiting == 0)
    {
        return;
    }

    ngx_p3x_redis_conn_start(rc, &rc->node->addr);
}


static void
ngx_p3x_redis_connected(ngx_p3x_rconn_t *rc)
{
    ngx_connection_t  *c;
    ngx_p3x_redis_t   *r;
#if (NGX_SSL)
    u_char            *sni;
    ngx_str_t         *name;
#endif

    c = rc->peer.connection;
    r = rc->node->redis;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

#if (NGX_SSL)

    if (r->tls && r->ssl) {

        /* OpenSSL's state hangs off a pool: one per TLS connection */

        rc->pool = ngx_create_pool(512, rc->log);
        if (rc->pool == NULL) {
            ngx_p3x_redis_conn_fail(rc, "out of memory");
            return;
        }

        c->pool = rc->pool;

        if (ngx_ssl_create_connection(r->ssl, c,
                                      NGX_SSL_BUFFER|NGX_SSL_CLIENT)
            != NGX_OK)
        {
            ngx_p3x_redis_conn_fail(rc, "TLS setup failed");
            return;
        }

        name = r->ssl_name.len ? &r->ssl_name : &rc->node->host;

        /* SNI names a host, never an address (RFC 6066, 3) */

        if (r->ssl_server_name && !ngx_p3x_redis_is_ip(name)) {
            sni = ngx_pnalloc(rc->pool, name->len + 1);
            if (sni == NULL) {
                ngx_p3x_redis_conn_fail(rc, "out of memory");
                return;
            }

            *ngx_cpymem(sni, name->data, name->len) = '\0';

            if (SSL_set_tlsext_host_name(c->ssl->connection, (char *) sni)
                == 0)
            {
                ngx_p3x_redis_conn_fail(rc, "cannot set TLS server name");
                return;
            }
        }

        rc->state = ngx_p3x_rconn_handshake;
        c->log->action = "TLS handshake with redis";

        if (ngx_ssl_handshake(c) == NGX_AGAIN) {
            ngx_add_timer(c->write, r->timeout);
            c->ssl->handler = ngx_p3x_redis_handshake;
            return;
        }

        ngx_p3x_redis_handshake(c);
        return;
    }

#endif

    ngx_p3x_redis_prepare(rc);
}


#if (NGX_SSL)

static ngx_uint_t
ngx_p3x_redis_is_ip(ngx_str_t *name)
{
    u_char  buf[16];

    if (ngx_inet_addr(name->data, name->len) != INADDR_NONE) {
        return 1;
    }

#if (NGX_HAVE_INET6)
    if (ngx_inet6_addr(name->data, name->len, buf) == NGX_OK) {
        return 1;
    }
#endif

    (void) buf;

    return 0;
}


/*
 * The certificate must name the server: a host name as nginx checks it,
 * an address against the certificate's IP addresses.
 */

static ngx_int_t
ngx_p3x_redis_check_name(ngx_connection_t *c, ngx_str_t *name)
{
    int     rc;
    X509   *cert;
    u_char  text[NGX_SOCKADDR_STRLEN + 1];

    if (!ngx_p3x_redis_is_ip(name)) {
        return ngx_ssl_check_host(c, name);
    }

    if (name->len >= sizeof(text)) {
        return NGX_ERROR;
    }

    *ngx_cpymem(text, name->data, name->len) = '\0';

    cert = SSL_get_peer_certificate(c->ssl->connection);
    if (cert == NULL) {
        return NGX_ERROR;
    }

    rc = X509_check_ip_asc(cert, (char *) text, 0);

    X509_free(cert);

    return rc == 1 ? NGX_OK : NGX_ERROR;
}


static void
ngx_p3x_redis_handshake(ngx_connection_t *c)
{
    long              rc_verify;
    ngx_str_t        *name;
    ngx_p3x_rconn_t  *rc;
    ngx_p3x_redis_t  *r;

    rc = c->data;
    r = rc->node->redis;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (!c->ssl->handshaked) {
        ngx_p3x_redis_conn_fail(rc, "TLS handshake failed");
        return;
    }

    if (r->ssl_verify) {
        rc_verify = SSL_get_verify_result(c->ssl->connection);

        if (rc_verify != X509_V_OK) {
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "pop3_ext: redis %V: certificate verify error: "
                          "(%l:%s)", &rc->node->name, rc_verify,
                          X509_verify_cert_error_string(rc_verify));
            ngx_p3x_redis_conn_fail(rc, "certificate not trusted");
            return;
        }

        name = r->ssl_name.len ? &r->ssl_name : &rc->node->host;

        if (ngx_p3x_redis_check_name(c, name) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "pop3_ext: redis %V: certificate does not match "
                          "\"%V\"", &rc->node->name, name);
            ngx_p3x_redis_conn_fail(rc, "certificate name mismatch");
            return;
        }
    }

    c->read->handler = ngx_p3x_redis_read_handler;
    c->write->handler = ngx_p3x_redis_write_handler;

    ngx_p3x_metrics_redis_tls(rc);

    ngx_p3x_redis_prepare(rc);
}

#else

static void
ngx_p3x_redis_handshake(ngx_connection_t *c)
{
}

#endif


/*
 * Before a connection takes requests: AUTH when a password is set, every
 * script loaded (so that EVALSHA finds it after a restart or a failover),
 * and ROLE behind Sentinels, which must say "master".  Requests of
 * sessions wait for the replies.
 */

static void
ngx_p3x_redis_prepare(ngx_p3x_rconn_t *rc)
{
    size_t            argvlen[3];
    ngx_uint_t        n;
    const char       *argv[3];
    ngx_p3x_rreq_t   *req;
    ngx_p3x_redis_t  *r;
    ngx_p3x_script_t *s;

    r = rc->node->redis;

    rc->state = ngx_p3x_rconn_preparing;
    rc->preparing = 0;
    rc->peer.connection->log->action = NULL;

    /* Sentinels are assumed to need no password */

    if (r->password.len && !rc->sentinel) {
        n = 0;
        argv[n] = "AUTH";
        argvlen[n++] = 4;

        if (r->user.len) {
            argv[n] = (const char *) r->user.data;
            argvlen[n++] = r->user.len;
        }

        argv[n] = (const char *) r->password.data;
        argvlen[n++] = r->password.len;

        req = ngx_p3x_redis_internal(r, n, argv, argvlen,
                                     ngx_p3x_redis_prepared, rc);
        if (req == NULL) {
            goto failed;
        }

        ngx_p3x_redis_conn_push(rc, req);
        rc->preparing++;
    }

    if (!rc->sentinel) {
        for (s = ngx_p3x_scripts; s->name.len; s++) {
            argv[0] = "SCRIPT";
            argvlen[0] = 6;
            argv[1] = "LOAD";
            argvlen[1] = 4;
            argv[2] = (const char *) s->source.data;
            argvlen[2] = s->source.len;

            req = ngx_p3x_redis_internal(r, 3, argv, argvlen,
                                         ngx_p3x_redis_prepared, rc);
            if (req == NULL) {
                goto failed;
            }

            ngx_p3x_redis_conn_push(rc, req);
            rc->preparing++;
        }
    }

    if (r->mode == NGX_P3X_REDIS_SENTINEL && !rc->sentinel) {
        argv[0] = "ROLE";
        argvlen[0] = 4;

        req = ngx_p3x_redis_internal(r, 1, argv, argvlen,
                                     ngx_p3x_redis_prepared, rc);
        if (req == NULL) {
            goto failed;
        }

        ngx_p3x_redis_conn_push(rc, req);
        rc->preparing++;
    }

    if (rc->sentinel) {
        ngx_p3x_redis_topology_sentinel_prepare(rc);
    }

    if (rc->preparing == 0) {
        ngx_p3x_redis_ready(rc);
        return;
    }

    ngx_p3x_redis_write_handler(rc->peer.connection->write);
    return;

failed:

    ngx_p3x_redis_conn_fail(rc, "out of memory");
}


static void
ngx_p3x_redis_prepared(void *data, redisReply *reply, ngx_uint_t status)
{
    ngx_p3x_rconn_t  *rc = data;

    if (reply == NULL || rc->fail) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {

        if (ngx_p3x_redis_error_is(reply, "WRONGPASS")
            || ngx_p3x_redis_error_is(reply, "NOAUTH")
            || ngx_p3x_redis_error_is(reply, "ERR invalid password")
            || ngx_p3x_redis_error_is(reply, "ERR AUTH"))
        {
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "pop3_ext: redis %V refused AUTH: %*s",
                          &rc->node->name, reply->len, reply->str);
            rc->fail = "AUTH refused";
            return;
        }

        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "pop3_ext: redis %V: %*s", &rc->node->name,
                      reply->len, reply->str);

    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0
               && reply->element[0]->type == REDIS_REPLY_STRING)
    {
        /* ROLE: a master only */

        if (reply->element[0]->len != 6
            || ngx_strncmp(reply->element[0]->str, "master", 6) != 0)
        {
            ngx_log_error(NGX_LOG_WARN, rc->log, 0,
                          "pop3_ext: redis %V is a %*s, not a master",
                          &rc->node->name, reply->element[0]->len,
                          reply->element[0]->str);
            rc->fail = "not a master";
            ngx_p3x_redis_topology_changed(rc->node->redis, "not a master");
            return;
        }
    }

    if (--rc->preparing == 0) {
        ngx_p3x_redis_ready(rc);
    }
}


static void
ngx_p3x_redis_ready(ngx_p3x_rconn_t *rc)
{
    ngx_p3x_rnode_t  *node;

    node = rc->node;

    if (node->failures || node->backoff > NGX_P3X_REDIS_BACKOFF_MIN) {
        ngx_log_error(NGX_LOG_NOTICE, rc->log, 0,
                      "pop3_ext: connected to redis %V", &node->name);
    }

    rc->state = ngx_p3x_rconn_ready;
    node->failures = 0;
    node->backoff = NGX_P3X_REDIS_BACKOFF_MIN;

    ngx_p3x_metrics_redis_ready(rc);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, rc->log, 0,
                   "pop3_ext redis: %V connection %ui ready",
                   &node->name, rc->index);

    ngx_p3x_redis_node_drain(node);
    ngx_p3x_redis_unpark(node->redis);

    ngx_p3x_redis_timer(rc);

    if (rc->nsendq) {
        ngx_p3x_redis_write_handler(rc->peer.connection->write);
    }
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
        c->log->action = "connecting to redis";
        ngx_connection_error(c, err, "connect() to redis failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_p3x_redis_write_handler(ngx_event_t *wev)
{
    ngx_queue_t       *q;
    ngx_chain_t       *cl, *head, **ll;
    ngx_p3x_rreq_t    *req;
    ngx_connection_t  *c;
    ngx_p3x_rconn_t   *rc;

    c = wev->data;
    rc = c->data;

    if (wev->timedout) {
        ngx_p3x_redis_conn_fail(rc, rc->state == ngx_p3x_rconn_handshake
                                    ? "TLS handshake timed out"
                                    : "connect timed out");
        return;
    }

    if (rc->state == ngx_p3x_rconn_connecting) {
        if (ngx_p3x_redis_test_connect(c) != NGX_OK) {
            ngx_p3x_redis_conn_fail(rc, "connect failed");
            return;
        }

        ngx_p3x_redis_connected(rc);
        return;
    }

    if (rc->state != ngx_p3x_rconn_ready
        && rc->state != ngx_p3x_rconn_preparing)
    {
        return;
    }

    while (rc->nsendq) {

        /* one chain of what waits, in order */

        head = NULL;
        ll = &head;

        for (q = ngx_queue_head(&rc->sendq);
             q != ngx_queue_sentinel(&rc->sendq);
             q = ngx_queue_next(q))
        {
            req = ngx_queue_data(q, ngx_p3x_rreq_t, queue);
            req->chain.next = NULL;
            *ll = &req->chain;
            ll = &req->chain.next;
        }

        cl = c->send_chain(c, head, 0);

        if (cl == NGX_CHAIN_ERROR) {
            ngx_p3x_redis_conn_fail(rc, "send failed");
            return;
        }

        /* what went out whole now waits for its reply */

        while (rc->nsendq) {
            q = ngx_queue_head(&rc->sendq);
            req = ngx_queue_data(q, ngx_p3x_rreq_t, queue);

            if (req->buf.pos != req->buf.last) {
                break;
            }

            ngx_queue_remove(q);
            rc->nsendq--;

            ngx_queue_insert_tail(&rc->inflight, q);
            rc->ninflight++;
            req->where = ngx_p3x_rreq_sent;
        }

        if (cl != NULL) {
            break;
        }
    }

    ngx_p3x_redis_timer(rc);

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_p3x_redis_conn_fail(rc, "write event failed");
    }
}


/*
 * One timer per connection: with requests on the wire, it fires when
 * Redis has sent nothing for three timeouts (the connection is dead);
 * idle, it fires after NGX_P3X_REDIS_KEEPALIVE to send a PING.
 */

static void
ngx_p3x_redis_timer(ngx_p3x_rconn_t *rc)
{
    ngx_msec_t         t;
    ngx_connection_t  *c;

    c = rc->peer.connection;

    if (c == NULL || rc->state < ngx_p3x_rconn_preparing) {
        return;
    }

    if (rc->ninflight || rc->nsendq) {
        t = ngx_max(3 * rc->node->redis->timeout, 3000);

    } else {
        t = NGX_P3X_REDIS_KEEPALIVE;
    }

    ngx_add_timer(c->read, t);
}


static void
ngx_p3x_redis_keepalive(ngx_p3x_rconn_t *rc)
{
    size_t           argvlen[1];
    const char      *argv[1];
    ngx_p3x_rreq_t  *req;

    argv[0] = "PING";
    argvlen[0] = 4;

    req = ngx_p3x_redis_internal(rc->node->redis, 1, argv, argvlen,
                                 ngx_p3x_redis_pong, rc);
    if (req == NULL) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, rc->log, 0,
                   "pop3_ext redis: PING %V", &rc->node->name);

    ngx_p3x_redis_conn_push(rc, req);
}


static void
ngx_p3x_redis_pong(void *data, redisReply *reply, ngx_uint_t status)
{
    /* an answer is all a PING is for: the connection made progress */
}


static void
ngx_p3x_redis_read_handler(ngx_event_t *rev)
{
    ssize_t            n;
    void              *reply;
    ngx_connection_t  *c;
    ngx_p3x_rconn_t   *rc;

    c = rev->data;
    rc = c->data;

    if (rc->state == ngx_p3x_rconn_connecting) {
        /* a refused connect may show as readable before writable */
        ngx_p3x_redis_write_handler(c->write);
        return;
    }

    if (rev->timedout) {
        rev->timedout = 0;

        if (rc->ninflight == 0 && rc->nsendq == 0
            && rc->state == ngx_p3x_rconn_ready)
        {
            ngx_p3x_redis_keepalive(rc);
            ngx_p3x_redis_timer(rc);
            return;
        }

        ngx_p3x_redis_conn_fail(rc, "redis made no progress for three "
                                    "timeouts");
        return;
    }

    for ( ;; ) {
        n = c->recv(c, ngx_p3x_redis_buf, sizeof(ngx_p3x_redis_buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0) {
            ngx_p3x_redis_conn_fail(rc, "connection closed by redis");
            return;
        }

        if (n == NGX_ERROR) {
            ngx_p3x_redis_conn_fail(rc, "recv failed");
            return;
        }

        if (redisReaderFeed(rc->reader, (const char *) ngx_p3x_redis_buf, n)
            != REDIS_OK)
        {
            ngx_p3x_redis_conn_fail(rc, "reader out of memory");
            return;
        }

        for ( ;; ) {
            reply = NULL;

            if (redisReaderGetReply(rc->reader, &reply) != REDIS_OK) {
                ngx_p3x_redis_conn_fail(rc, rc->reader->errstr);
                return;
            }

            if (reply == NULL) {
                break;
            }

            ngx_p3x_redis_dispatch(rc, reply);

            if (rc->fail) {
                ngx_p3x_redis_conn_fail(rc, rc->fail);
                return;
            }
        }
    }

    ngx_p3x_redis_timer(rc);

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_p3x_redis_conn_fail(rc, "read event failed");
    }
}


/*
 * A reply for the oldest request on the wire.  Redirections and "try
 * again" errors mean the command did not run: it goes again, elsewhere
 * or later, within its deadline.
 */

static void
ngx_p3x_redis_dispatch(ngx_p3x_rconn_t *rc, redisReply *reply)
{
    ngx_queue_t     *q;
    ngx_p3x_rreq_t  *req;

    if (rc->subscribed) {

        /* a PING's answer in the subscribed state: ["pong", ""] */

        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
            && reply->element[0]->type == REDIS_REPLY_STRING
            && reply->element[0]->len == 4
            && ngx_strncasecmp((u_char *) reply->element[0]->str,
                               (u_char *) "pong", 4) == 0
            && !ngx_queue_empty(&rc->inflight))
        {
            q = ngx_queue_head(&rc->inflight);
            req = ngx_queue_data(q, ngx_p3x_rreq_t, queue);
            ngx_p3x_redis_finish(req, NULL, NGX_P3X_REDIS_OK);

        } else {
            ngx_p3x_redis_topology_message(rc, reply);
        }

        freeReplyObject(reply);
        return;
    }

    if (ngx_queue_empty(&rc->inflight)) {
        ngx_log_error(NGX_LOG_ALERT, rc->log, 0,
                      "pop3_ext: unexpected reply from redis %V",
                      &rc->node->name);
        freeReplyObject(reply);
        rc->fail = "unexpected reply";
        return;
    }

    q = ngx_queue_head(&rc->inflight);
    req = ngx_queue_data(q, ngx_p3x_rreq_t, queue);

    /* ASKING's "+OK" first, WAIT's count last: the command's in between */

    if (req->asking && req->replies == (ngx_uint_t) (2 + req->waited)) {
        req->replies--;
        freeReplyObject(reply);
        return;
    }

    if (req->replies > 1) {
        req->replies--;
        req->reply = reply;
        return;
    }

    ngx_queue_remove(q);
    rc->ninflight--;
    req->where = ngx_p3x_rreq_none;

    if (req->waited) {
        /* reply is WAIT's count; the command's own reply was kept */
        redisReply  *count = reply;

        reply = req->reply;
        req->reply = NULL;

        if (reply->type != REDIS_REPLY_ERROR
            && (count->type != REDIS_REPLY_INTEGER
                || count->integer < (long long) rc->node->redis->wait))
        {
            ngx_log_error(NGX_LOG_WARN, rc->log, 0,
                          "pop3_ext: redis %V: a write was confirmed by "
                          "%L of %ui replicas", &rc->node->name,
                          count->type == REDIS_REPLY_INTEGER
                          ? count->integer : (long long) -1,
                          rc->node->redis->wait);
            freeReplyObject(count);

            ngx_p3x_redis_finish(req, reply, NGX_P3X_REDIS_UNACKED);
            freeReplyObject(reply);
            return;
        }

        freeReplyObject(count);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, rc->log, 0,
                   "pop3_ext redis: reply to %p from %V", req,
                   &rc->node->name);

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_p3x_metrics_redis_error(rc->node, reply->str, reply->len);
    }

    if (reply->type == REDIS_REPLY_ERROR && !req->internal) {

        /* the script cache is empty after SCRIPT FLUSH: load, send again */

        if (req->script >= 0 && !req->noscript
            && ngx_p3x_redis_error_is(reply, "NOSCRIPT"))
        {
            req->noscript = 1;
            ngx_p3x_redis_reload(rc, req->script);
            req->buf.pos = req->buf.start;
            req->replies = 1 + req->asking + req->waited;
            ngx_p3x_redis_conn_push(rc, req);
            freeReplyObject(reply);
            return;
        }

        if (ngx_p3x_redis_topology_redirect(req, reply) == NGX_OK) {
            freeReplyObject(reply);
            return;
        }
    }

    if (req->handler == NULL && !req->internal
        && reply->type == REDIS_REPLY_ERROR)
    {
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "pop3_ext: redis %V: %*s", &rc->node->name,
                      reply->len, reply->str);
    }

    ngx_p3x_redis_finish(req, reply, NGX_P3X_REDIS_OK);

    freeReplyObject(reply);
}


static ngx_int_t
ngx_p3x_redis_error_is(redisReply *reply, const char *prefix)
{
    size_t  len;

    len = ngx_strlen(prefix);

    return reply->type == REDIS_REPLY_ERROR && reply->len >= len
           && ngx_strncmp(reply->str, prefix, len) == 0;
}


static void
ngx_p3x_redis_reload(ngx_p3x_rconn_t *rc, ngx_int_t script)
{
    size_t           argvlen[3];
    const char      *argv[3];
    ngx_p3x_rreq_t  *req;

    argv[0] = "SCRIPT";
    argvlen[0] = 6;
    argv[1] = "LOAD";
    argvlen[1] = 4;
    argv[2] = (const char *) ngx_p3x_scripts[script].source.data;
    argvlen[2] = ngx_p3x_scripts[script].source.len;

    req = ngx_p3x_redis_internal(rc->node->redis, 3, argv, argvlen, NULL,
                                 NULL);
    if (req) {
        ngx_p3x_redis_conn_push(rc, req);
    }
}


/*
 * A connection is lost.  What had not been sent has not run: it goes
 * again, within its deadline.  What was on the wire may have run: it goes
 * again only if that is harmless, otherwise its handler learns that the
 * outcome is unknown.  A reconnect follows after a growing pause.
 */

void
ngx_p3x_redis_conn_fail(ngx_p3x_rconn_t *rc, const char *why)
{
    ngx_queue_t       lost, *q;
    ngx_uint_t        unsent, level;
    ngx_p3x_rreq_t   *req;
    ngx_p3x_rnode_t  *node;
    ngx_p3x_redis_t  *r;

    node = rc->node;
    r = node->redis;

    if (rc->state == ngx_p3x_rconn_down) {
        return;
    }

    if (rc->state != ngx_p3x_rconn_ready) {
        node->failures++;
    }

    ngx_p3x_metrics_redis_lost(rc);

    level = (rc->state == ngx_p3x_rconn_ready) ? NGX_LOG_ERR : NGX_LOG_WARN;

    ngx_log_error(level, rc->log, 0,
                  "pop3_ext: redis %V: %s, %ui request(s) on the wire",
                  &node->name, why, rc->ninflight);

    ngx_p3x_redis_conn_close(rc);

    /* requests move out of the connection before any handler runs */

    ngx_queue_init(&lost);
    ngx_queue_add(&lost, &rc->inflight);
    ngx_queue_add(&lost, &rc->sendq);
    ngx_queue_init(&rc->inflight);
    ngx_queue_init(&rc->sendq);
    rc->ninflight = 0;
    rc->nsendq = 0;
    rc->preparing = 0;
    rc->fail = NULL;

    if (!rc->sentinel && !(ngx_exiting || ngx_terminate || ngx_quit)) {
        ngx_add_timer(&rc->reconnect, node->backoff);
        node->backoff = ngx_min(node->backoff * 2,
                                NGX_P3X_REDIS_BACKOFF_MAX);
    }

    if (r->mode != NGX_P3X_REDIS_SINGLE || rc->sentinel) {
        ngx_p3x_redis_topology_changed(r, rc->sentinel ? "sentinel lost"
                                                       : "node lost");
    }

    while (!ngx_queue_empty(&lost)) {
        q = ngx_queue_head(&lost);
        ngx_queue_remove(q);

        req = ngx_queue_data(q, ngx_p3x_rreq_t, queue);
        req->where = ngx_p3x_rreq_none;
        req->conn = NULL;

        if (req->internal) {
            ngx_p3x_redis_finish(req, NULL, NGX_P3X_REDIS_NOTRUN);
            continue;
        }

        /* an attempt that went out unanswered may have run, for good */

        if (req->buf.pos != req->buf.start) {
            req->sent = 1;
        }

        unsent = !req->sent;

        /* a request with no deadline left is one nobody waits for */

        if ((unsent || req->idempotent) && req->timer.timer_set
            && !(r->mode == NGX_P3X_REDIS_SINGLE && req->handler
                 && node->failures > 0)
            && !(ngx_exiting || ngx_terminate || ngx_quit))
        {
            ngx_p3x_redis_again(req, NULL, 0);
            continue;
        }

        if (req->handler == NULL && req->owner == NULL
            && !req->timer.timer_set)
        {
            /* a late request nobody waits for any more */
            ngx_p3x_redis_free_req(req);
            continue;
        }

        ngx_p3x_redis_finish(req, NULL, unsent ? NGX_P3X_REDIS_NOTRUN
                                               : NGX_P3X_REDIS_UNKNOWN);
    }

    if (r->mode == NGX_P3X_REDIS_SINGLE && node->failures > 0) {
        ngx_p3x_redis_node_fail_waiting(node);
    }
}


void
ngx_p3x_redis_conn_close(ngx_p3x_rconn_t *rc)
{
    ngx_connection_t  *c;

    c = rc->peer.connection;

    if (c) {
#if (NGX_SSL)
        if (c->ssl) {
            c->ssl->no_wait_shutdown = 1;
            c->ssl->no_send_shutdown = 1;
            (void) ngx_ssl_shutdown(c);
        }
#endif
        ngx_close_connection(c);
        rc->peer.connection = NULL;
    }

    if (rc->pool) {
        ngx_destroy_pool(rc->pool);
        rc->pool = NULL;
    }

    if (rc->reader) {
        redisReaderFree(rc->reader);
        rc->reader = NULL;
    }

    rc->state = ngx_p3x_rconn_down;
    rc->subscribed = 0;
}


/* closes a connection that carries only the client's own requests */

void
ngx_p3x_redis_conn_reset(ngx_p3x_rconn_t *rc)
{
    ngx_queue_t  *q;

    ngx_p3x_redis_conn_close(rc);

    while (!ngx_queue_empty(&rc->inflight)) {
        q = ngx_queue_head(&rc->inflight);
        ngx_queue_remove(q);
        ngx_p3x_redis_free_req(ngx_queue_data(q, ngx_p3x_rreq_t, queue));
    }

    while (!ngx_queue_empty(&rc->sendq)) {
        q = ngx_queue_head(&rc->sendq);
        ngx_queue_remove(q);
        ngx_p3x_redis_free_req(ngx_queue_data(q, ngx_p3x_rreq_t, queue));
    }

    rc->ninflight = 0;
    rc->nsendq = 0;
    rc->preparing = 0;
    rc->fail = NULL;
}


ngx_int_t
ngx_p3x_redis_init_worker(ngx_cycle_t *cycle, ngx_p3x_redis_t *r)
{
    ngx_p3x_redis_worker_t  *w;

    w = ngx_pcalloc(cycle->pool, sizeof(ngx_p3x_redis_worker_t));
    if (w == NULL) {
        return NGX_ERROR;
    }

    w->pool = cycle->pool;
    w->log = cycle->log;
    w->retry_backoff = NGX_P3X_REDIS_BACKOFF_MIN;
    w->sentinel_backoff = NGX_P3X_REDIS_BACKOFF_MIN;

    ngx_queue_init(&w->parked);

    if (ngx_array_init(&w->nodes, cycle->pool, 8, sizeof(ngx_p3x_rnode_t *))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    w->retry.handler = ngx_p3x_redis_retry_handler;
    w->retry.data = r;
    w->retry.log = cycle->log;
    w->retry.cancelable = 1;

    r->worker = w;

    return ngx_p3x_redis_topology_init(r);
}


/* at exit: nothing is sent any more and nothing is called back */

void
ngx_p3x_redis_exit_worker(ngx_p3x_redis_t *r)
{
    ngx_uint_t               i, j;
    ngx_queue_t             *q;
    ngx_p3x_rreq_t          *req;
    ngx_p3x_rconn_t         *rc;
    ngx_p3x_rnode_t        **np;
    ngx_p3x_redis_worker_t  *w;

    w = r->worker;

    if (w == NULL) {
        return;
    }

    ngx_p3x_redis_topology_exit(r);

    if (w->retry.timer_set) {
        ngx_del_timer(&w->retry);
    }

    np = w->nodes.elts;

    for (i = 0; i < w->nodes.nelts; i++) {
        for (j = 0; j < np[i]->nconns; j++) {
            rc = &np[i]->conns[j];

            if (rc->reconnect.timer_set) {
                ngx_del_timer(&rc->reconnect);
            }

            ngx_p3x_redis_conn_close(rc);

            while (!ngx_queue_empty(&rc->inflight)) {
                q = ngx_queue_head(&rc->inflight);
                ngx_queue_remove(q);
                ngx_p3x_redis_free_req(ngx_queue_data(q, ngx_p3x_rreq_t,
                                                      queue));
            }

            while (!ngx_queue_empty(&rc->sendq)) {
                q = ngx_queue_head(&rc->sendq);
                ngx_queue_remove(q);
                ngx_p3x_redis_free_req(ngx_queue_data(q, ngx_p3x_rreq_t,
                                                      queue));
            }
        }

        while (!ngx_queue_empty(&np[i]->waiting)) {
            q = ngx_queue_head(&np[i]->waiting);
            ngx_queue_remove(q);
            ngx_p3x_redis_free_req(ngx_queue_data(q, ngx_p3x_rreq_t, queue));
        }
    }

    while (!ngx_queue_empty(&w->parked)) {
        q = ngx_queue_head(&w->parked);
        ngx_queue_remove(q);
        req = ngx_queue_data(q, ngx_p3x_rreq_t, queue);
        ngx_p3x_redis_free_req(req);
    }

    r->worker = NULL;
}
