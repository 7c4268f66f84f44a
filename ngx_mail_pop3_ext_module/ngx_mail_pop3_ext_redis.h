
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * The Redis client's own types, shared by its two files:
 *   _redis.c           requests, connections, replies, timeouts
 *   _redis_topology.c  where a request goes: a standalone server, the
 *                      master that Sentinels name, or the node of a
 *                      Redis Cluster that owns the request's slot
 * The rest of the module sees only the calls in ngx_mail_pop3_ext_module.h.
 */


#ifndef _NGX_MAIL_POP3_EXT_REDIS_H_INCLUDED_
#define _NGX_MAIL_POP3_EXT_REDIS_H_INCLUDED_


#include "ngx_mail_pop3_ext_module.h"


#define NGX_P3X_REDIS_SLOTS        16384

/* the connection that carries acknowledged writes, when wait= is set */
#define NGX_P3X_REDIS_ACK_CONN     ((ngx_uint_t) -1)


typedef struct ngx_p3x_rnode_s  ngx_p3x_rnode_t;


/* where a request is, which says what cancelling or failing it means */
typedef enum {
    ngx_p3x_rreq_none = 0,
    ngx_p3x_rreq_parked,         /* waits for a route, in redis->parked */
    ngx_p3x_rreq_waiting,        /* waits for a node's connection */
    ngx_p3x_rreq_sending,        /* in a connection's sendq */
    ngx_p3x_rreq_sent            /* in a connection's inflight FIFO */
} ngx_p3x_rreq_where_e;


struct ngx_p3x_rreq_s {
    ngx_queue_t                queue;       /* parked, waiting, sendq or
                                               inflight */
    ngx_queue_t                owned;       /* in the owner's list */
    ngx_queue_t               *owner;       /* NULL: nobody waits */

    ngx_p3x_redis_t           *redis;
    ngx_p3x_rnode_t           *node;        /* where it waits or went */
    ngx_p3x_rconn_t           *conn;

    ngx_p3x_redis_handler_pt   handler;
    void                      *data;
    ngx_uint_t                 tag;

    ngx_event_t                timer;       /* the deadline */

    u_char                    *cmd;         /* the command */
    size_t                     cmd_len;
    u_char                    *wire;        /* ASKING, the command, WAIT:
                                               cmd itself when alone */
    ngx_buf_t                  buf;         /* wire, as sent so far */
    ngx_chain_t                chain;

    redisReply                *reply;       /* kept until WAIT answers */

    ngx_int_t                  script;      /* -1, or the EVALSHA's */
    ngx_int_t                  slot;        /* -1: any node */
    ngx_uint_t                 affinity;    /* one connection of a node */
    ngx_uint_t                 redirects;
    ngx_uint_t                 replies;     /* still to come for this */

    ngx_p3x_rnode_t           *ask;         /* ASK: this node, once */

    uint64_t                   start;       /* for the metrics; 0 once
                                               counted */

    ngx_p3x_rreq_where_e       where;

    unsigned                   internal:1;  /* the client's own request */
    unsigned                   idempotent:1;
    unsigned                   ack:1;       /* followed by WAIT */
    unsigned                   asking:1;    /* ASKING precedes it */
    unsigned                   noscript:1;  /* reloaded once already */
    unsigned                   waited:1;    /* WAIT is on the wire */
    unsigned                   sent:1;      /* an attempt went out and
                                               was lost: it may have run,
                                               whatever happens after */
};


typedef enum {
    ngx_p3x_rconn_down = 0,
    ngx_p3x_rconn_connecting,
    ngx_p3x_rconn_handshake,     /* TLS */
    ngx_p3x_rconn_preparing,     /* AUTH, scripts, ROLE on their way */
    ngx_p3x_rconn_ready
} ngx_p3x_rconn_state_e;


struct ngx_p3x_rconn_s {
    ngx_p3x_rnode_t           *node;
    ngx_uint_t                 index;
    ngx_peer_connection_t      peer;
    ngx_pool_t                *pool;        /* for TLS state only */
    redisReader               *reader;

    ngx_queue_t                sendq;
    ngx_queue_t                inflight;
    ngx_uint_t                 nsendq;
    ngx_uint_t                 ninflight;
    ngx_uint_t                 preparing;   /* replies before ready */

    ngx_event_t                reconnect;
    ngx_log_t                 *log;

    ngx_p3x_rconn_state_e      state;

    const char                *fail;        /* set by a reply handler */

    unsigned                   sentinel:1;  /* a Sentinel, subscribed */
    unsigned                   subscribed:1;
    unsigned                   lost:1;      /* since it was last ready */
};


/* one Redis server: the standalone one, a cluster node, the master */
struct ngx_p3x_rnode_s {
    ngx_p3x_redis_t           *redis;
    ngx_str_t                  name;        /* "host:port" */
    ngx_addr_t                 addr;
    ngx_str_t                  host;        /* TLS name */

    ngx_p3x_rconn_t           *conns;
    ngx_uint_t                 nconns;      /* + 1 for acks with wait= */

    ngx_queue_t                waiting;     /* for a ready connection */
    ngx_uint_t                 nwaiting;

    ngx_msec_t                 backoff;
    ngx_uint_t                 failures;    /* connects failed in a row */
    ngx_uint_t                 nslots;      /* cluster: slots it owns */

    unsigned                   retired:1;   /* no longer used */

    void                      *metrics;     /* its row in the metrics
                                               zone, once met */
};


/* per worker: the state behind one configured pop3_ext_redis */
struct ngx_p3x_redis_worker_s {
    ngx_pool_t                *pool;
    ngx_log_t                 *log;

    ngx_array_t                nodes;       /* ngx_p3x_rnode_t * */
    ngx_p3x_rnode_t           *master;      /* standalone, Sentinel */
    ngx_p3x_rnode_t          **slots;       /* cluster */

    ngx_queue_t                parked;      /* for a route */
    ngx_uint_t                 nparked;
    ngx_event_t                retry;       /* routes parked ones again */
    ngx_msec_t                 retry_backoff;

    /* cluster: the slot map is asked for again after a change */
    ngx_event_t                refresh;
    ngx_msec_t                 refreshed;
    unsigned                   refreshing:1;
    unsigned                   mapped:1;

    /* sentinel */
    ngx_p3x_rconn_t            sentinel;
    ngx_uint_t                 sentinel_next;
    ngx_msec_t                 sentinel_backoff;

    ngx_uint_t                 next;        /* for requests of no one */
};


/* _redis.c */
ngx_p3x_rnode_t *ngx_p3x_redis_node(ngx_p3x_redis_t *r, ngx_addr_t *addr,
    ngx_str_t *name);
void ngx_p3x_redis_route(ngx_p3x_rreq_t *req);
void ngx_p3x_redis_again(ngx_p3x_rreq_t *req, ngx_p3x_rnode_t *ask,
    ngx_uint_t later);
void ngx_p3x_redis_conn_fail(ngx_p3x_rconn_t *rc, const char *why);
void ngx_p3x_redis_node_retire(ngx_p3x_rnode_t *node);
void ngx_p3x_redis_node_drain(ngx_p3x_rnode_t *node);
ngx_p3x_rreq_t *ngx_p3x_redis_internal(ngx_p3x_redis_t *r, int argc,
    const char **argv, const size_t *argvlen,
    ngx_p3x_redis_handler_pt handler, void *data);
void ngx_p3x_redis_conn_push(ngx_p3x_rconn_t *rc, ngx_p3x_rreq_t *req);
void ngx_p3x_redis_conn_start(ngx_p3x_rconn_t *rc, ngx_addr_t *addr);
void ngx_p3x_redis_conn_close(ngx_p3x_rconn_t *rc);
void ngx_p3x_redis_conn_reset(ngx_p3x_rconn_t *rc);
void ngx_p3x_redis_park(ngx_p3x_rreq_t *req);
void ngx_p3x_redis_unpark(ngx_p3x_redis_t *r);
void ngx_p3x_redis_free_req(ngx_p3x_rreq_t *req);

/* _redis_topology.c */
ngx_int_t ngx_p3x_redis_topology_init(ngx_p3x_redis_t *r);
ngx_p3x_rnode_t *ngx_p3x_redis_target(ngx_p3x_rreq_t *req);
void ngx_p3x_redis_topology_changed(ngx_p3x_redis_t *r, const char *why);
ngx_int_t ngx_p3x_redis_topology_redirect(ngx_p3x_rreq_t *req,
    redisReply *reply);
void ngx_p3x_redis_topology_exit(ngx_p3x_redis_t *r);
void ngx_p3x_redis_topology_sentinel_prepare(ngx_p3x_rconn_t *rc);
void ngx_p3x_redis_topology_message(ngx_p3x_rconn_t *rc,
    redisReply *reply);
ngx_int_t ngx_p3x_redis_parse_addr(ngx_pool_t *pool, u_char *host,
    size_t host_len, ngx_int_t port, ngx_addr_t *addr, ngx_str_t *name);
ngx_uint_t ngx_p3x_redis_key_slot(const u_char *key, size_t len);


#endif /* _NGX_MAIL_POP3_EXT_REDIS_H_INCLUDED_ */
