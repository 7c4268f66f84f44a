
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * Where a request goes.
 *
 *   standalone  the one configured server
 *   sentinel    the master that the Sentinels name: asked for with
 *               SENTINEL get-master-addr-by-name, confirmed with ROLE
 *               (see _redis.c), followed through "+switch-master"
 *               messages, and asked for again when the master's
 *               connection breaks or it answers READONLY
 *   cluster     the node that owns the request's slot, from CLUSTER
 *               SLOTS asked of any node; MOVED updates one slot at once
 *               and the whole map soon after, ASK sends one request once
 *               with ASKING, TRYAGAIN and CLUSTERDOWN park it for a
 *               while; new and promoted nodes are found by these, with
 *               no reload
 *
 * A request that has no route (no map yet, no master known) is parked
 * and routed again when the topology changes or a moment later, until
 * its deadline.
 */


#include "ngx_mail_pop3_ext_redis.h"


#define NGX_P3X_TOPOLOGY_DEBOUNCE   100
#define NGX_P3X_TOPOLOGY_FAILOVER   250


static void ngx_p3x_redis_refresh_handler(ngx_event_t *ev);
static void ngx_p3x_redis_cluster_refresh(ngx_p3x_redis_t *r);
static void ngx_p3x_redis_cluster_slots(void *data, redisReply *reply,
    ngx_uint_t status);
static ngx_p3x_rnode_t *ngx_p3x_redis_cluster_any(ngx_p3x_redis_t *r);
static void ngx_p3x_redis_sentinel_connect(ngx_p3x_redis_t *r);
static void ngx_p3x_redis_sentinel_master(void *data, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_redis_sentinel_subscribed(void *data, redisReply *reply,
    ngx_uint_t status);
static void ngx_p3x_redis_set_master(ngx_p3x_redis_t *r, u_char *host,
    size_t host_len, u_char *port, size_t port_len);
static ngx_p3x_rnode_t *ngx_p3x_redis_find_node(ngx_p3x_redis_t *r,
    u_char *host, size_t host_len, ngx_int_t port);


ngx_int_t
ngx_p3x_redis_topology_init(ngx_p3x_redis_t *r)
{
    ngx_uint_t               i;
    ngx_addr_t              *addr;
    ngx_p3x_rnode_t         *node;
    ngx_p3x_redis_worker_t  *w;

    w = r->worker;
    addr = r->addrs->elts;

    w->refresh.handler = ngx_p3x_redis_refresh_handler;
    w->refresh.data = r;
    w->refresh.log = w->log;
    w->refresh.cancelable = 1;

    switch (r->mode) {

    case NGX_P3X_REDIS_SINGLE:
        w->master = ngx_p3x_redis_node(r, &addr[0], &addr[0].name);
        if (w->master == NULL) {
            return NGX_ERROR;
        }

        for (i = 0; i < w->master->nconns; i++) {
            ngx_p3x_redis_conn_start(&w->master->conns[i], &addr[0]);
        }

        return NGX_OK;

    case NGX_P3X_REDIS_CLUSTER:
        w->slots = ngx_pcalloc(w->pool,
                               NGX_P3X_REDIS_SLOTS * sizeof(ngx_p3x_rnode_t *));
        if (w->slots == NULL) {
            return NGX_ERROR;
        }

        /* the seeds: one connection each until the map is known */

        for (i = 0; i < r->addrs->nelts; i++) {
            node = ngx_p3x_redis_node(r, &addr[i], &addr[i].name);
            if (node == NULL) {
                return NGX_ERROR;
            }

            ngx_p3x_redis_conn_start(&node->conns[0], &addr[i]);
        }

        return NGX_OK;

    default: /* NGX_P3X_REDIS_SENTINEL */
        ngx_p3x_redis_sentinel_connect(r);
        return NGX_OK;
    }
}


void
ngx_p3x_redis_topology_exit(ngx_p3x_redis_t *r)
{
    ngx_p3x_redis_worker_t  *w;

    w = r->worker;

    if (w->refresh.timer_set) {
        ngx_del_timer(&w->refresh);
    }

    /* the Sentinel's connection is no node's: it is closed here */

    if (w->sentinel.node) {
        if (w->sentinel.reconnect.timer_set) {
            ngx_del_timer(&w->sentinel.reconnect);
        }

        ngx_p3x_redis_conn_reset(&w->sentinel);
    }
}


/* the node a request goes to now, or NULL: parked until there is one */

ngx_p3x_rnode_t *
ngx_p3x_redis_target(ngx_p3x_rreq_t *req)
{
    ngx_p3x_redis_worker_t  *w;

    w = req->redis->worker;

    if (req->redis->mode != NGX_P3X_REDIS_CLUSTER) {
        return w->master;
    }

    if (!w->mapped) {
        ngx_p3x_redis_topology_changed(req->redis, NULL);
        return NULL;
    }

    if (req->slot < 0) {
        return ngx_p3x_redis_cluster_any(req->redis);
    }

    return w->slots[req->slot];
}


/*
 * Something moved or broke: the map (cluster) or the master (sentinel)
 * is asked for again, at most once per NGX_P3X_TOPOLOGY_DEBOUNCE ms.
 */

void
ngx_p3x_redis_topology_changed(ngx_p3x_redis_t *r, const char *why)
{
    ngx_msec_t               delay;
    ngx_p3x_redis_worker_t  *w;

    w = r->worker;

    if (r->mode == NGX_P3X_REDIS_SINGLE || w == NULL) {
        return;
    }

    if (why) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, w->log, 0,
                       "pop3_ext redis: topology changed: %s", why);
    }

    if (w->refresh.timer_set || w->refreshing) {
        return;
    }

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (r->mode == NGX_P3X_REDIS_SENTINEL) {
        delay = w->sentinel_backoff;

    } else {
        delay = (ngx_current_msec - w->refreshed
                 < NGX_P3X_TOPOLOGY_DEBOUNCE)
                ? NGX_P3X_TOPOLOGY_DEBOUNCE : 0;
    }

    ngx_add_timer(&w->refresh, delay);
}


static void
ngx_p3x_redis_refresh_handler(ngx_event_t *ev)
{
    ngx_p3x_redis_t  *r;

    r = ev->data;

    if (r->mode == NGX_P3X_REDIS_CLUSTER) {
        ngx_p3x_redis_cluster_refresh(r);

    } else {
        ngx_p3x_redis_sentinel_connect(r);
    }
}


/*
 * A redirection or a "not now" from Redis: the command did not run.
 * NGX_OK: the request goes again (elsewhere, or later); NGX_DECLINED:
 * the error is the reply its handler gets.
 */

ngx_int_t
ngx_p3x_redis_topology_redirect(ngx_p3x_rreq_t *req, redisReply *reply)
{
    u_char           *p, *last, *colon, *host;
    ngx_int_t         slot, port;
    ngx_uint_t        ask;
    ngx_p3x_redis_t  *r;
    ngx_p3x_rnode_t  *node;

    r = req->redis;

    if (!req->timer.timer_set) {
        return NGX_DECLINED;          /* nobody waits any more */
    }

    p = (u_char *) reply->str;
    last = p + reply->len;

    if (reply->len > 4
        && (ngx_strncmp(p, "MOVED ", 6) == 0
            || ngx_strncmp(p, "ASK ", 4) == 0)
        && r->mode == NGX_P3X_REDIS_CLUSTER)
    {
        ask = (p[1] == 'S');
        p += ask ? 4 : 6;

        /* "MOVED 3999 127.0.0.1:6381" */

        host = ngx_strlchr(p, last, ' ');
        if (host == NULL) {
            return NGX_DECLINED;
        }

        slot = ngx_atoi(p, host - p);
        host++;

        for (colon = last; colon > host && colon[-1] != ':'; colon--) {
            /* void */
        }

        if (colon == host || slot < 0 || slot >= NGX_P3X_REDIS_SLOTS) {
            return NGX_DECLINED;
        }

        port = ngx_atoi(colon, last - colon);

        node = ngx_p3x_redis_find_node(r, host, colon - 1 - host, port);

        if (node == NULL || ++req->redirects > 5) {
            return NGX_DECLINED;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_MAIL, r->worker->log, 0,
                       "pop3_ext redis: %s slot %i to %V",
                       ask ? "ASK" : "MOVED", slot, &node->name);

        ngx_p3x_metrics_redis_redirect(req->node, ask);

        if (ask) {
            ngx_p3x_redis_again(req, node, 0);
            return NGX_OK;
        }

        if (r->worker->slots[slot] != node) {
            if (r->worker->slots[slot]) {
                r->worker->slots[slot]->nslots--;
            }

            r->worker->slots[slot] = node;
            node->nslots++;
        }

        ngx_p3x_redis_topology_changed(r, "MOVED");
        ngx_p3x_redis_again(req, NULL, 0);

        return NGX_OK;
    }

    if ((reply->len >= 8 && ngx_strncmp(p, "TRYAGAIN", 8) == 0)
        || (reply->len >= 11 && ngx_strncmp(p, "CLUSTERDOWN", 11) == 0)
        || (reply->len >= 7 && ngx_strncmp(p, "LOADING", 7) == 0)
        || (reply->len >= 10 && ngx_strncmp(p, "MASTERDOWN", 10) == 0)
        || (reply->len >= 8 && ngx_strncmp(p, "READONLY", 8) == 0
            && r->mode != NGX_P3X_REDIS_SINGLE))
    {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, r->worker->log, 0,
                       "pop3_ext redis: %*s, again later",
                       ngx_min(reply->len, 16), p);

        if (p[0] != 'T' && p[0] != 'L') {
            ngx_p3x_redis_topology_changed(r, "redis says not here");
        }

        /* from its first octet, a moment later */
        ngx_p3x_redis_again(req, NULL, 1);

        return NGX_OK;
    }

    return NGX_DECLINED;
}


/* cluster */

static void
ngx_p3x_redis_cluster_refresh(ngx_p3x_redis_t *r)
{
    size_t                   argvlen[2];
    ngx_uint_t               i, j;
    const char              *argv[2];
    ngx_p3x_rreq_t          *req;
    ngx_p3x_rconn_t         *rc;
    ngx_p3x_rnode_t        **np;
    ngx_p3x_redis_worker_t  *w;

    w = r->worker;

    if (w->refreshing) {
        return;
    }

    /* any node with a ready connection can tell */

    rc = NULL;
    np = w->nodes.elts;

    for (i = 0; rc == NULL && i < w->nodes.nelts; i++) {
        for (j = 0; j < np[i]->nconns; j++) {
            if (np[i]->conns[j].state == ngx_p3x_rconn_ready) {
                rc = &np[i]->conns[j];
                break;
            }
        }
    }

    if (rc == NULL) {

        /* none: connect to every known node; the first ready one asks */

        for (i = 0; i < w->nodes.nelts; i++) {
            if (np[i]->conns[0].state == ngx_p3x_rconn_down
                && !np[i]->conns[0].reconnect.timer_set
                && !np[i]->conns[0].reconnect.posted)
            {
                ngx_post_event(&np[i]->conns[0].reconnect,
                               &ngx_posted_events);
            }
        }

        return;
    }

    argv[0] = "CLUSTER";
    argvlen[0] = 7;
    argv[1] = "SLOTS";
    argvlen[1] = 5;

    req = ngx_p3x_redis_internal(r, 2, argv, argvlen,
                                 ngx_p3x_redis_cluster_slots, rc->node);
    if (req == NULL) {
        return;
    }

    ngx_add_timer(&req->timer, r->timeout);

    w->refreshing = 1;
    w->refreshed = ngx_current_msec;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, w->log, 0,
                   "pop3_ext redis: CLUSTER SLOTS from %V", &rc->node->name);

    ngx_p3x_redis_conn_push(rc, req);
}


/* [[start, end, [host, port, id], replicas...], ...] */

static void
ngx_p3x_redis_cluster_slots(void *data, redisReply *reply,
    ngx_uint_t status)
{
    ngx_p3x_rnode_t *asked = data;

    u_char                  *host;
    ngx_uint_t               again;
    ngx_p3x_rnode_t        **np;
    size_t                   host_len;
    ngx_int_t                start, end, slot, port;
    ngx_uint_t               i, covered;
    redisReply              *range, *master;
    ngx_p3x_redis_t         *r;
    ngx_p3x_rnode_t         *node;
    ngx_p3x_redis_worker_t  *w;

    r = asked->redis;
    w = r->worker;

    w->refreshing = 0;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, w->log, 0,
                          "pop3_ext: redis %V: CLUSTER SLOTS: %*s",
                          &asked->name, reply->len, reply->str);
        }

        ngx_p3x_redis_topology_changed(r, "CLUSTER SLOTS failed");
        return;
    }

    covered = 0;

    np = w->nodes.elts;

    for (i = 0; i < w->nodes.nelts; i++) {
        np[i]->nslots = 0;
    }

    for (i = 0; i < reply->elements; i++) {
        range = reply->element[i];

        if (range->type != REDIS_REPLY_ARRAY || range->elements < 3
            || range->element[0]->type != REDIS_REPLY_INTEGER
            || range->element[1]->type != REDIS_REPLY_INTEGER
            || range->element[2]->type != REDIS_REPLY_ARRAY
            || range->element[2]->elements < 2
            || range->element[2]->element[0]->type != REDIS_REPLY_STRING
            || range->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
        {
            continue;
        }

        start = range->element[0]->integer;
        end = range->element[1]->integer;

        if (start < 0 || end >= NGX_P3X_REDIS_SLOTS || start > end) {
            continue;
        }

        master = range->element[2];
        host = (u_char *) master->element[0]->str;
        host_len = master->element[0]->len;
        port = master->element[1]->integer;

        /* an empty host is the node that answered */

        if (host_len == 0) {
            host = asked->host.data;
            host_len = asked->host.len;
        }

        node = ngx_p3x_redis_find_node(r, host, host_len, port);
        if (node == NULL) {
            continue;
        }

        for (slot = start; slot <= end; slot++) {
            w->slots[slot] = node;
        }

        node->nslots += end - start + 1;
        covered += end - start + 1;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, w->log, 0,
                   "pop3_ext redis: slot map from %V, %ui slots",
                   &asked->name, covered);

    if (covered == 0) {
        ngx_p3x_redis_topology_changed(r, "empty slot map");
        return;
    }

    if (!w->mapped) {
        ngx_log_error(NGX_LOG_NOTICE, w->log, 0,
                      "pop3_ext: redis cluster %V: %ui slots mapped",
                      &r->name, covered);
    }

    w->mapped = 1;

    /* what waited for a node that no longer owns its slot moves on */

    np = w->nodes.elts;
    again = 0;

    for (i = 0; i < w->nodes.nelts; i++) {
        ngx_p3x_redis_node_drain(np[i]);

        if (np[i]->nwaiting && np[i]->failures) {
            again = 1;
        }
    }

    ngx_p3x_redis_unpark(r);

    /*
     * Requests still wait for a master that cannot be reached: its
     * replica takes over within the cluster's node timeout, so the map
     * is asked for again soon, not only when a reconnect fails.
     */

    if (again && !w->refresh.timer_set) {
        ngx_add_timer(&w->refresh, NGX_P3X_TOPOLOGY_FAILOVER);
    }
}


static ngx_p3x_rnode_t *
ngx_p3x_redis_cluster_any(ngx_p3x_redis_t *r)
{
    ngx_p3x_redis_worker_t  *w;

    w = r->worker;

    return w->slots[w->next++ % NGX_P3X_REDIS_SLOTS];
}


/* sentinel */

static void
ngx_p3x_redis_sentinel_connect(ngx_p3x_redis_t *r)
{
    ngx_addr_t              *addr;
    ngx_p3x_rconn_t         *rc;
    ngx_p3x_rnode_t         *node;
    ngx_p3x_redis_worker_t  *w;

    w = r->worker;
    addr = r->addrs->elts;

    if (w->sentinel.node && w->sentinel.state != ngx_p3x_rconn_down) {
        /* subscribed: asking again means a new connection */
        ngx_p3x_redis_conn_reset(&w->sentinel);
    }

    node = ngx_p3x_redis_node(r, &addr[w->sentinel_next % r->addrs->nelts],
                              &addr[w->sentinel_next % r->addrs->nelts].name);
    w->sentinel_next++;

    if (node == NULL) {
        return;
    }

    /* a Sentinel's node is never a target: it takes no requests */
    node->retired = 1;

    rc = &w->sentinel;
    rc->node = node;
    rc->log = w->log;
    rc->sentinel = 1;

    if (rc->inflight.next == NULL) {
        ngx_queue_init(&rc->sendq);
        ngx_queue_init(&rc->inflight);
    }

    rc->reconnect.handler = ngx_p3x_redis_refresh_handler;
    rc->reconnect.data = r;
    rc->reconnect.log = w->log;
    rc->reconnect.cancelable = 1;

    w->sentinel_backoff = ngx_min(w->sentinel_backoff * 2, 5000);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, w->log, 0,
                   "pop3_ext redis: asking sentinel %V", &node->name);

    ngx_p3x_redis_conn_start(rc, &node->addr);
}


/* the master's address, then "+switch-master" messages from then on */

void
ngx_p3x_redis_topology_sentinel_prepare(ngx_p3x_rconn_t *rc)
{
    size_t            argvlen[3];
    const char       *argv[3];
    ngx_p3x_rreq_t   *req;
    ngx_p3x_redis_t  *r;

    r = rc->node->redis;

    argv[0] = "SENTINEL";
    argvlen[0] = 8;
    argv[1] = "get-master-addr-by-name";
    argvlen[1] = sizeof("get-master-addr-by-name") - 1;
    argv[2] = (const char *) r->sentinel_name.data;
    argvlen[2] = r->sentinel_name.len;

    req = ngx_p3x_redis_internal(r, 3, argv, argvlen,
                                 ngx_p3x_redis_sentinel_master, rc);
    if (req == NULL) {
        rc->fail = "out of memory";
        return;
    }

    ngx_p3x_redis_conn_push(rc, req);
    rc->preparing++;

    argv[0] = "SUBSCRIBE";
    argvlen[0] = 9;
    argv[1] = "+switch-master";
    argvlen[1] = sizeof("+switch-master") - 1;

    req = ngx_p3x_redis_internal(r, 2, argv, argvlen,
                                 ngx_p3x_redis_sentinel_subscribed, rc);
    if (req == NULL) {
        rc->fail = "out of memory";
        return;
    }

    ngx_p3x_redis_conn_push(rc, req);
    rc->preparing++;
}


static void
ngx_p3x_redis_sentinel_master(void *data, redisReply *reply,
    ngx_uint_t status)
{
    ngx_p3x_rconn_t *rc = data;

    ngx_p3x_redis_t  *r;

    if (reply == NULL) {
        return;
    }

    r = rc->node->redis;
    rc->preparing--;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "pop3_ext: sentinel %V does not know master \"%V\"",
                      &rc->node->name, &r->sentinel_name);
        rc->fail = "master unknown";
        return;
    }

    ngx_p3x_redis_set_master(r, (u_char *) reply->element[0]->str,
                             reply->element[0]->len,
                             (u_char *) reply->element[1]->str,
                             reply->element[1]->len);
}


static void
ngx_p3x_redis_sentinel_subscribed(void *data, redisReply *reply,
    ngx_uint_t status)
{
    ngx_p3x_rconn_t *rc = data;

    if (reply == NULL) {
        return;
    }

    rc->preparing--;

    if (reply->type != REDIS_REPLY_ARRAY) {
        rc->fail = "SUBSCRIBE refused";
        return;
    }

    rc->subscribed = 1;
    rc->state = ngx_p3x_rconn_ready;
    rc->node->redis->worker->sentinel_backoff = 100;
}


/* ["message", "+switch-master", "NAME oldip oldport newip newport"] */

void
ngx_p3x_redis_topology_message(ngx_p3x_rconn_t *rc, redisReply *reply)
{
    u_char           *p, *last, *f[5];
    size_t            len[5];
    ngx_uint_t        n;
    redisReply       *text;
    ngx_p3x_redis_t  *r;

    r = rc->node->redis;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    text = reply->element[2];
    p = (u_char *) text->str;
    last = p + text->len;

    for (n = 0; n < 5 && p < last; n++) {
        f[n] = p;

        while (p < last && *p != ' ') {
            p++;
        }

        len[n] = p - f[n];

        while (p < last && *p == ' ') {
            p++;
        }
    }

    if (n != 5 || len[0] != r->sentinel_name.len
        || ngx_strncmp(f[0], r->sentinel_name.data, len[0]) != 0)
    {
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, rc->log, 0,
                  "pop3_ext: sentinel: master \"%V\" switched to %*s:%*s",
                  &r->sentinel_name, len[3], f[3], len[4], f[4]);

    ngx_p3x_redis_set_master(r, f[3], len[3], f[4], len[4]);
}


static void
ngx_p3x_redis_set_master(ngx_p3x_redis_t *r, u_char *host, size_t host_len,
    u_char *port, size_t port_len)
{
    ngx_int_t                n;
    ngx_p3x_rnode_t         *node, *old;
    ngx_p3x_redis_worker_t  *w;

    w = r->worker;

    n = ngx_atoi(port, port_len);

    node = ngx_p3x_redis_find_node(r, host, host_len, n);
    if (node == NULL) {
        return;
    }

    node->retired = 0;

    if (w->master == node) {
        return;
    }

    old = w->master;
    w->master = node;

    ngx_log_error(NGX_LOG_NOTICE, w->log, 0,
                  "pop3_ext: redis %V: master is %V", &r->name, &node->name);

    if (old) {
        ngx_p3x_redis_node_retire(old);
    }

    ngx_p3x_redis_unpark(r);
}


/* a node for "host" and a port, which Redis gives as an IP address */

static ngx_p3x_rnode_t *
ngx_p3x_redis_find_node(ngx_p3x_redis_t *r, u_char *host, size_t host_len,
    ngx_int_t port)
{
    u_char            name[NGX_SOCKADDR_STRLEN + 8];
    ngx_str_t         text;
    ngx_addr_t        addr;
    ngx_sockaddr_t    sa;

    if (port <= 0 || port > 65535 || host_len == 0
        || host_len > NGX_SOCKADDR_STRLEN)
    {
        return NULL;
    }

    ngx_memzero(&sa, sizeof(ngx_sockaddr_t));

    if (ngx_inet_addr(host, host_len) != INADDR_NONE) {
        sa.sockaddr_in.sin_family = AF_INET;
        sa.sockaddr_in.sin_addr.s_addr = ngx_inet_addr(host, host_len);
        addr.socklen = sizeof(struct sockaddr_in);

#if (NGX_HAVE_INET6)
    } else if (ngx_inet6_addr(host, host_len,
                              sa.sockaddr_in6.sin6_addr.s6_addr)
               == NGX_OK)
    {
        sa.sockaddr_in6.sin6_family = AF_INET6;
        addr.socklen = sizeof(struct sockaddr_in6);
#endif

    } else {
        ngx_log_error(NGX_LOG_ERR, r->worker->log, 0,
                      "pop3_ext: redis named \"%*s\", not an IP address: "
                      "names are not resolved on the event loop",
                      host_len, host);
        return NULL;
    }

    addr.sockaddr = &sa.sockaddr;
    ngx_inet_set_port(addr.sockaddr, (in_port_t) port);

    text.data = name;
    text.len = ngx_sock_ntop(addr.sockaddr, addr.socklen, name,
                             sizeof(name), 1);

    return ngx_p3x_redis_node(r, &addr, &text);
}


/* the model's rule (ngx_mail_pop3_ext_model.h) */

ngx_uint_t
ngx_p3x_redis_key_slot(const u_char *key, size_t len)
{
    return p3x_key_slot(key, len);
}
