
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: the Redis layer.  One Redis, a Redis Cluster or the master
 * that Sentinels name, as the Redis specification says (the grammar of
 * ngx_mail_pop3_ext_spec.h, shared with the module's directive).
 *
 * The sockets are the tool's own (unix sockets here; TCP, and TLS through
 * OpenSSL with verification, in pop3ext_socket.c, which import's POP3
 * client shares); hiredis only encodes commands and decodes replies,
 * which works alike with hiredis 0.14 (no TLS) and 1.x.  Every command
 * names the key it is routed by: in a cluster its slot picks the node,
 * MOVED updates the slot map, ASK is followed once, TRYAGAIN and
 * CLUSTERDOWN are waited out for a few seconds.  Through Sentinel, a
 * connection lost or a -READONLY reply (the master became a replica)
 * finds the master again, once.  With wait=N, pop3ext_sync() sends WAIT
 * on every connection that wrote, so that an acknowledged write is on N
 * replicas.
 *
 * Every failure to reach Redis is EX_TEMPFAIL: an MTA tries again later.
 */


#include "pop3ext.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <openssl/err.h>


#define POP3EXT_CLUSTER_SLOTS     16384
#define POP3EXT_BUF               65536


static const pop3ext_peer_t  pop3ext_redis_peer = {
    "redis at", "redis host", ""
};


static int pop3ext_redis_tls(pop3ext_ctx_t *cx);
static void pop3ext_sleep(unsigned long ms);
static int pop3ext_node_add(pop3ext_ctx_t *cx, const char *host,
    size_t len, unsigned port);
static void pop3ext_node_init(pop3ext_node_t *n, const char *host,
    size_t len, unsigned port);
static int pop3ext_node_open(pop3ext_ctx_t *cx, pop3ext_node_t *n,
    int auth);
static int pop3ext_node_socket(pop3ext_ctx_t *cx, pop3ext_node_t *n,
    unsigned long long deadline);
static int pop3ext_node_handshake(pop3ext_ctx_t *cx, pop3ext_node_t *n,
    unsigned long long deadline);
static int pop3ext_node_auth(pop3ext_ctx_t *cx, pop3ext_node_t *n);
static void pop3ext_node_close(pop3ext_ctx_t *cx, pop3ext_node_t *n);
static int pop3ext_node_send(pop3ext_ctx_t *cx, pop3ext_node_t *n,
    const char *buf, size_t len, unsigned long long deadline);
static int pop3ext_node_reply(pop3ext_ctx_t *cx, pop3ext_node_t *n,
    redisReply **rp, unsigned long long deadline);
static int pop3ext_node_call(pop3ext_ctx_t *cx, pop3ext_node_t *n,
    redisReply **rp, const char *fmt, ...);
static int pop3ext_sentinel(pop3ext_ctx_t *cx);
static int pop3ext_sentinel_ask(pop3ext_ctx_t *cx, pop3ext_node_t *s,
    char *host, unsigned *port);
static int pop3ext_cluster_map(pop3ext_ctx_t *cx);
static int pop3ext_cluster_slots(pop3ext_ctx_t *cx, pop3ext_node_t *n,
    redisReply *r);
static int pop3ext_redirect(pop3ext_ctx_t *cx, redisReply *r,
    unsigned *slot);
static int pop3ext_route(pop3ext_ctx_t *cx, const char *key, int write,
    const char *cmd, size_t len, redisReply **rp);
static int pop3ext_is_error(redisReply *r, const char *code);


/*
 * Parses the specification (-r or POP3EXT_REDIS) and the TLS options;
 * nothing is connected yet.  A bad specification is EX_USAGE, a TLS file
 * that cannot be used EX_CONFIG, both found before stdin is read.
 */

int
pop3ext_redis_init(pop3ext_ctx_t *cx, const char *text)
{
    int           n;
    char          err[P3X_SPEC_ERR_LEN];
    size_t        lens[P3X_SPEC_WORDS_MAX];
    unsigned      i;
    const char   *argv[P3X_SPEC_WORDS_MAX], *p;

    cx->text = text;

    n = p3x_spec_split(text, strlen(text), argv, lens, P3X_SPEC_WORDS_MAX);

    if (n < 0) {
        return pop3ext_usage_error("redis specification \"%s\": more than "
                                   "%d words", text, P3X_SPEC_WORDS_MAX);
    }

    if (p3x_spec_parse(&cx->spec, n, argv, lens, err, sizeof(err)) != 0) {
        return pop3ext_usage_error("redis specification \"%s\": %s", text,
                                   err);
    }

    /*
     * AUTH: user= and password= of the specification, else the
     * environment's, which, unlike a command line, ps(1) does not show
     */

    if (cx->spec.password != NULL) {
        cx->password = pop3ext_strndup(cx->spec.password,
                                       cx->spec.password_len);
        cx->user = cx->spec.user
                   ? pop3ext_strndup(cx->spec.user, cx->spec.user_len)
                   : NULL;

        if (cx->password == NULL
            || (cx->spec.user != NULL && cx->user == NULL))
        {
            pop3ext_error("out of memory");
            return EX_TEMPFAIL;
        }

    } else {
        p = getenv("POP3EXT_REDIS_PASSWORD");

        if (p != NULL && p[0] != '\0') {
            cx->password = (char *) p;

            p = getenv("POP3EXT_REDIS_USER");
            cx->user = (p != NULL && p[0] != '\0') ? (char *) p : NULL;
        }
    }

    cx->connect_ms = cx->spec.timeout_ms;
    cx->reply_ms = (cx->spec.seen & P3X_SPEC_SEEN_TIMEOUT)
                   ? cx->spec.timeout_ms : POP3EXT_REPLY_TIMEOUT;

    if (!cx->spec.tls
        && (cx->tls_ca || cx->tls_cert || cx->tls_key || cx->tls_name))
    {
        return pop3ext_usage_error("--tls-* options need \"tls\" in the "
                                   "redis specification");
    }

    /* the environment fills what the command line did not give */

    if (cx->spec.tls) {
        if (cx->tls_ca == NULL) {
            cx->tls_ca = getenv("POP3EXT_REDIS_CA");
        }

        if (cx->tls_cert == NULL) {
            cx->tls_cert = getenv("POP3EXT_REDIS_CERT");
        }

        if (cx->tls_key == NULL) {
            cx->tls_key = getenv("POP3EXT_REDIS_KEY");
        }

        if (cx->tls_name == NULL) {
            cx->tls_name = getenv("POP3EXT_REDIS_NAME");
        }

        if (cx->tls_name != NULL && cx->tls_name[0] == '\0') {
            cx->tls_name = NULL;
        }

        n = pop3ext_redis_tls(cx);
        if (n != EX_OK) {
            return n;
        }
    }

    /* the Sentinels are asked in pop3ext_sentinel(); the rest are nodes */

    if (cx->spec.mode == P3X_SPEC_SENTINEL) {
        return EX_OK;
    }

    for (i = 0; i < cx->spec.naddrs; i++) {
        if (cx->spec.addrs[i].path != NULL) {
            n = pop3ext_node_add(cx, cx->spec.addrs[i].path,
                                 cx->spec.addrs[i].path_len, 0);

        } else {
            n = pop3ext_node_add(cx, cx->spec.addrs[i].host,
                                 cx->spec.addrs[i].host_len,
                                 cx->spec.addrs[i].port);
        }

        if (n < 0) {
            return EX_TEMPFAIL;
        }
    }

    return EX_OK;
}


static int
pop3ext_redis_tls(pop3ext_ctx_t *cx)
{
    int           rc;
    size_t        i;
    const char   *files[3];

    /* a file that cannot be read says why better than OpenSSL does */

    files[0] = cx->tls_ca;
    files[1] = cx->tls_cert;
    files[2] = cx->tls_key;

    for (i = 0; i < 3; i++) {
        if (files[i] != NULL && files[i][0] != '\0'
            && access(files[i], R_OK) == -1)
        {
            pop3ext_error("cannot read \"%s\": %s", files[i],
                          strerror(errno));
            return EX_CONFIG;
        }
    }

    rc = pop3ext_tls_context(&cx->ssl_ctx, cx->tls_ca, 1);
    if (rc != EX_OK) {
        return rc;
    }

    if ((cx->tls_cert != NULL && cx->tls_cert[0] != '\0')
        != (cx->tls_key != NULL && cx->tls_key[0] != '\0'))
    {
        return pop3ext_usage_error("a client certificate needs both "
                                   "--tls-cert and --tls-key");
    }

    if (cx->tls_cert != NULL && cx->tls_cert[0] != '\0') {
        if (SSL_CTX_use_certificate_chain_file(cx->ssl_ctx, cx->tls_cert)
            != 1)
        {
            pop3ext_error("cannot load the certificate \"%s\": %s",
                          cx->tls_cert, pop3ext_ssl_reason());
            return EX_CONFIG;
        }

        if (SSL_CTX_use_PrivateKey_file(cx->ssl_ctx, cx->tls_key,
                                        SSL_FILETYPE_PEM)
            != 1
            || SSL_CTX_check_private_key(cx->ssl_ctx) != 1)
        {
            pop3ext_error("cannot load the key \"%s\": %s",
                          cx->tls_key, pop3ext_ssl_reason());
            return EX_CONFIG;
        }
    }

    ERR_clear_error();

    return EX_OK;
}


static void
pop3ext_sleep(unsigned long ms)
{
    struct timespec  ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long) (ms % 1000) * 1000000;

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
        /* void */
    }
}


/* the index of the node host:port, added if new; -1 when out of memory */

static int
pop3ext_node_add(pop3ext_ctx_t *cx, const char *host, size_t len,
    unsigned port)
{
    unsigned         i;
    pop3ext_node_t  *n;

    if (len >= POP3EXT_HOST_MAX) {
        len = POP3EXT_HOST_MAX - 1;
    }

    for (i = 0; i < cx->nnodes; i++) {
        n = &cx->nodes[i];

        if (n->port == port && strlen(n->host) == len
            && memcmp(n->host, host, len) == 0)
        {
            return (int) i;
        }
    }

    if (cx->nnodes == cx->nalloc) {
        n = realloc(cx->nodes, (cx->nalloc + 16) * sizeof(pop3ext_node_t));
        if (n == NULL) {
            pop3ext_error("out of memory");
            return -1;
        }

        cx->nodes = n;
        cx->nalloc += 16;
    }

    pop3ext_node_init(&cx->nodes[cx->nnodes], host, len, port);

    return (int) cx->nnodes++;
}


static void
pop3ext_node_init(pop3ext_node_t *n, const char *host, size_t len,
    unsigned port)
{
    memset(n, 0, sizeof(pop3ext_node_t));

    memcpy(n->host, host, len);
    n->host[len] = '\0';
    n->port = port;
    n->fd = -1;

    if (port == 0) {
        snprintf(n->name, sizeof(n->name), "unix:%s", n->host);

    } else if (memchr(host, ':', len) != NULL) {
        snprintf(n->name, sizeof(n->name), "[%s]:%u", n->host, port);

    } else {
        snprintf(n->name, sizeof(n->name), "%s:%u", n->host, port);
    }
}


/*
 * Connects as the specification says: the single Redis; the master the
 * Sentinels name; or the slot map of the cluster.
 */

int
pop3ext_connect(pop3ext_ctx_t *cx)
{
    int  rc, started;

    if (cx->connected) {
        return EX_OK;
    }

    started = pop3ext_defer_begin();

    switch (cx->spec.mode) {

    case P3X_SPEC_SENTINEL:
        rc = pop3ext_sentinel(cx);
        break;

    case P3X_SPEC_CLUSTER:
        rc = pop3ext_cluster_map(cx);
        break;

    default:
        rc = pop3ext_node_open(cx, &cx->nodes[0], 1);
        break;
    }

    if (rc == EX_OK) {
        cx->connected = 1;
    }

    pop3ext_defer_end(started, rc != EX_OK);

    return rc;
}


void
pop3ext_disconnect(pop3ext_ctx_t *cx)
{
    unsigned  i;

    for (i = 0; i < cx->nnodes; i++) {
        pop3ext_node_close(cx, &cx->nodes[i]);
    }

    if (cx->ssl_ctx != NULL) {
        SSL_CTX_free(cx->ssl_ctx);
        cx->ssl_ctx = NULL;
    }

    if (cx->password != NULL && cx->spec.password != NULL) {
        explicit_bzero(cx->password, strlen(cx->password));
        free(cx->password);
        free(cx->user);
    }

    cx->password = NULL;
    cx->user = NULL;

    free(cx->nodes);
    free(cx->slots);

    cx->nodes = NULL;
    cx->slots = NULL;
    cx->nnodes = 0;
    cx->nalloc = 0;
    cx->connected = 0;
}


/* a connection to n, with TLS if asked, and AUTH if auth and configured */

static int
pop3ext_node_open(pop3ext_ctx_t *cx, pop3ext_node_t *n, int auth)
{
    int                  rc;
    unsigned long long   deadline;

    if (n->fd != -1) {
        return EX_OK;
    }

    deadline = pop3ext_now() + cx->connect_ms;

    rc = pop3ext_node_socket(cx, n, deadline);

    if (rc == EX_OK && cx->spec.tls) {
        rc = pop3ext_node_handshake(cx, n, deadline);
    }

    if (rc == EX_OK) {
        n->reader = redisReaderCreate();

        if (n->reader == NULL) {
            pop3ext_error("out of memory");
            rc = EX_TEMPFAIL;
        }
    }

    if (rc == EX_OK && auth) {
        rc = pop3ext_node_auth(cx, n);
    }

    if (rc != EX_OK) {
        pop3ext_node_close(cx, n);
    }

    return rc;
}


static int
pop3ext_node_socket(pop3ext_ctx_t *cx, pop3ext_node_t *n,
    unsigned long long deadline)
{
    int                  fd, err;
    struct sockaddr_un   sun;

    (void) cx;

    if (n->port == 0) {
        if (strlen(n->host) >= sizeof(sun.sun_path)) {
            pop3ext_error("redis at %s: the path is too long", n->name);
            return EX_TEMPFAIL;
        }

        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        memcpy(sun.sun_path, n->host, strlen(n->host));

        fd = socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0);

        if (fd == -1 || connect(fd, (struct sockaddr *) &sun, sizeof(sun))
                        == -1)
        {
            err = errno;
            pop3ext_error("cannot connect to redis at %s: %s", n->name,
                          strerror(err));
            if (fd != -1) {
                close(fd);
            }

            return EX_TEMPFAIL;
        }

        (void) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        n->fd = fd;

        return EX_OK;
    }

    return pop3ext_sock_connect(&pop3ext_redis_peer, n->name, n->host,
                                n->port, deadline, &n->fd);
}


/*
 * TLS with verification: the certificate must chain to the CA (--tls-ca,
 * else the system's) and name --tls-name, else the host of the address:
 * an IP address is matched against the certificate's IP addresses, a
 * name against its DNS names, and a name is sent as SNI.
 */

static int
pop3ext_node_handshake(pop3ext_ctx_t *cx, pop3ext_node_t *n,
    unsigned long long deadline)
{
    return pop3ext_sock_tls(&pop3ext_redis_peer, n->name, cx->ssl_ctx, n->fd,
                            cx->tls_name ? cx->tls_name : n->host, 1,
                            deadline, &n->ssl);
}


/* AUTH [user] password, when the specification or environment has one */

static int
pop3ext_node_auth(pop3ext_ctx_t *cx, pop3ext_node_t *n)
{
    int          rc;
    redisReply  *r;

    if (cx->password == NULL) {
        return EX_OK;
    }

    if (cx->user != NULL) {
        rc = pop3ext_node_call(cx, n, &r, "AUTH %s %s", cx->user,
                               cx->password);

    } else {
        rc = pop3ext_node_call(cx, n, &r, "AUTH %s", cx->password);
    }

    if (rc != EX_OK) {
        return rc;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        pop3ext_error("redis at %s refused AUTH: %.*s", n->name,
                      (int) r->len, r->str);
        rc = EX_TEMPFAIL;
    }

    freeReplyObject(r);

    return rc;
}


/* a connection that wrote and is lost leaves its writes unconfirmed */

static void
pop3ext_node_close(pop3ext_ctx_t *cx, pop3ext_node_t *n)
{
    if (n->dirty) {
        cx->lost_dirty = 1;
        n->dirty = 0;
    }

    if (n->ssl != NULL) {
        SSL_free(n->ssl);
        n->ssl = NULL;
    }

    if (n->fd != -1) {
        close(n->fd);
        n->fd = -1;
    }

    if (n->reader != NULL) {
        redisReaderFree(n->reader);
        n->reader = NULL;
    }
}


static int
pop3ext_node_send(pop3ext_ctx_t *cx, pop3ext_node_t *n, const char *buf,
    size_t len, unsigned long long deadline)
{
    (void) cx;

    return pop3ext_sock_send(&pop3ext_redis_peer, n->name, n->fd, n->ssl,
                             buf, len, deadline);
}


static int
pop3ext_node_reply(pop3ext_ctx_t *cx, pop3ext_node_t *n, redisReply **rp,
    unsigned long long deadline)
{
    char      buf[POP3EXT_BUF];
    void     *reply;
    ssize_t   got;

    for ( ;; ) {
        reply = NULL;

        if (redisReaderGetReply(n->reader, &reply) != REDIS_OK) {
            pop3ext_error("redis at %s: bad reply: %s", n->name,
                          n->reader->errstr);
            return EX_TEMPFAIL;
        }

        if (reply != NULL) {
            *rp = reply;
            memcpy(cx->last, n->name, sizeof(cx->last));
            return EX_OK;
        }

        got = pop3ext_sock_recv(&pop3ext_redis_peer, n->name, n->fd, n->ssl,
                                buf, sizeof(buf), deadline);

        if (got == POP3EXT_SOCK_TIMEDOUT) {
            pop3ext_error("redis at %s: timed out", n->name);
            return EX_TEMPFAIL;
        }

        if (got == POP3EXT_SOCK_ERROR) {
            return EX_TEMPFAIL;
        }

        if (got == 0) {
            pop3ext_error("redis at %s: connection lost", n->name);
            return EX_TEMPFAIL;
        }

        if (redisReaderFeed(n->reader, buf, (size_t) got) != REDIS_OK) {
            pop3ext_error("out of memory");
            return EX_TEMPFAIL;
        }
    }
}


/*
 * One command on one node, for the layer's own commands (AUTH, ROLE,
 * CLUSTER SLOTS, SENTINEL, WAIT): the reply, an error reply included, or
 * EX_TEMPFAIL.
 */

static int
pop3ext_node_call(pop3ext_ctx_t *cx, pop3ext_node_t *n, redisReply **rp,
    const char *fmt, ...)
{
    int                  len, rc;
    char                *cmd;
    va_list              args;
    unsigned long long   deadline;

    va_start(args, fmt);
    len = redisvFormatCommand(&cmd, fmt, args);
    va_end(args);

    if (len < 0) {
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    deadline = pop3ext_now() + cx->reply_ms;

    rc = pop3ext_node_send(cx, n, cmd, (size_t) len, deadline);

    explicit_bzero(cmd, (size_t) len);
    redisFreeCommand(cmd);

    if (rc == EX_OK) {
        rc = pop3ext_node_reply(cx, n, rp, deadline);
    }

    return rc;
}


/*
 * Sentinel: each Sentinel in turn is asked for the master's address; the
 * master is confirmed with ROLE, since a Sentinel may still name a master
 * that a failover demoted.  Rounds go on for a few seconds, which covers
 * a failover in progress.
 */

static int
pop3ext_sentinel(pop3ext_ctx_t *cx)
{
    int                  idx;
    char                 host[POP3EXT_HOST_MAX];
    unsigned             i, port, wait;
    redisReply          *r;
    pop3ext_node_t       s, *m;
    p3x_spec_addr_t     *a;
    unsigned long long   deadline;

    deadline = pop3ext_now() + POP3EXT_RETRY_TIME;
    wait = 100;

    for ( ;; ) {
        for (i = 0; i < cx->spec.naddrs; i++) {
            a = &cx->spec.addrs[i];

            if (a->path != NULL) {
                pop3ext_node_init(&s, a->path, a->path_len, 0);

            } else {
                pop3ext_node_init(&s, a->host, a->host_len, a->port);
            }

            if (pop3ext_sentinel_ask(cx, &s, host, &port) != EX_OK) {
                continue;
            }

            /* the master found replaces the one used before */

            if (cx->nnodes > 0) {
                pop3ext_node_close(cx, &cx->nodes[0]);
                cx->nnodes = 0;
            }

            idx = pop3ext_node_add(cx, host, strlen(host), port);
            if (idx < 0) {
                return EX_TEMPFAIL;
            }

            m = &cx->nodes[idx];
            cx->current = (unsigned) idx;

            if (pop3ext_node_open(cx, m, 1) != EX_OK) {
                continue;
            }

            if (pop3ext_node_call(cx, m, &r, "ROLE") != EX_OK) {
                pop3ext_node_close(cx, m);
                continue;
            }

            if (r->type == REDIS_REPLY_ARRAY && r->elements > 0
                && r->element[0]->type == REDIS_REPLY_STRING
                && strcmp(r->element[0]->str, "master") == 0)
            {
                freeReplyObject(r);
                return EX_OK;
            }

            pop3ext_error("redis at %s, named by Sentinel %s, is not a "
                          "master", m->name, s.name);
            freeReplyObject(r);
            pop3ext_node_close(cx, m);
        }

        if (pop3ext_now() + wait >= deadline) {
            break;
        }

        pop3ext_sleep(wait);
        wait = wait * 2 > 1000 ? 1000 : wait * 2;
    }

    pop3ext_error("no Sentinel of \"%s\" named a master \"%.*s\" that "
                  "could be reached", cx->text, (int) cx->spec.sentinel_len,
                  cx->spec.sentinel);

    return EX_TEMPFAIL;
}


/*
 * SENTINEL get-master-addr-by-name.  A Sentinel that requires a password
 * (its own requirepass) says NOAUTH: it is then given the same AUTH.
 */

static int
pop3ext_sentinel_ask(pop3ext_ctx_t *cx, pop3ext_node_t *s, char *host,
    unsigned *port)
{
    int            rc, tries;
    redisReply    *r, *h, *p;
    unsigned long  v;

    if (pop3ext_node_open(cx, s, 0) != EX_OK) {
        return EX_TEMPFAIL;
    }

    for (tries = 0; /* void */; tries++) {
        rc = pop3ext_node_call(cx, s, &r, "SENTINEL get-master-addr-by-name "
                               "%b", cx->spec.sentinel,
                               cx->spec.sentinel_len);
        if (rc != EX_OK) {
            goto done;
        }

        if (tries == 0 && pop3ext_is_error(r, "NOAUTH")
            && cx->password != NULL)
        {
            freeReplyObject(r);

            rc = pop3ext_node_auth(cx, s);
            if (rc != EX_OK) {
                goto done;
            }

            continue;
        }

        break;
    }

    rc = EX_TEMPFAIL;

    if (r->type == REDIS_REPLY_ERROR) {
        pop3ext_error("Sentinel %s: %.*s", s->name, (int) r->len, r->str);

    } else if (r->type == REDIS_REPLY_NIL) {
        pop3ext_error("Sentinel %s does not know the master \"%.*s\"",
                      s->name, (int) cx->spec.sentinel_len,
                      cx->spec.sentinel);

    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
               || (h = r->element[0])->type != REDIS_REPLY_STRING
               || (p = r->element[1])->type != REDIS_REPLY_STRING
               || h->len == 0 || h->len >= POP3EXT_HOST_MAX
               || p3x_spec_number(p->str, p->len, 65535, &v) != 0
               || v == 0)
    {
        pop3ext_error("Sentinel %s: unexpected reply to SENTINEL "
                      "get-master-addr-by-name", s->name);

    } else {
        memcpy(host, h->str, h->len);
        host[h->len] = '\0';
        *port = (unsigned) v;
        rc = EX_OK;
    }

    freeReplyObject(r);

done:

    pop3ext_node_close(cx, s);

    return rc;
}


/*
 * The slot map, from CLUSTER SLOTS of the first node that answers; seed
 * nodes first, then any node learnt since.  Nodes that serve no slot
 * (replicas, nodes gone) stay known but are not masters.
 */

static int
pop3ext_cluster_map(pop3ext_ctx_t *cx)
{
    int                  rc;
    unsigned             i, wait;
    redisReply          *r;
    pop3ext_node_t      *n;
    unsigned long long   deadline;

    if (cx->slots == NULL) {
        cx->slots = calloc(POP3EXT_CLUSTER_SLOTS, sizeof(unsigned short));
        if (cx->slots == NULL) {
            pop3ext_error("out of memory");
            return EX_TEMPFAIL;
        }
    }

    deadline = pop3ext_now() + POP3EXT_RETRY_TIME;
    wait = 100;

    for ( ;; ) {
        for (i = 0; i < cx->nnodes; i++) {
            n = &cx->nodes[i];

            if (pop3ext_node_open(cx, n, 1) != EX_OK) {
                continue;
            }

            if (pop3ext_node_call(cx, n, &r, "CLUSTER SLOTS") != EX_OK) {
                pop3ext_node_close(cx, n);
                continue;
            }

            rc = pop3ext_cluster_slots(cx, n, r);

            freeReplyObject(r);

            if (rc == EX_OK) {
                return EX_OK;
            }
        }

        if (pop3ext_now() + wait >= deadline) {
            break;
        }

        pop3ext_sleep(wait);
        wait = wait * 2 > 1000 ? 1000 : wait * 2;
    }

    pop3ext_error("no node of the cluster \"%s\" gave a slot map that "
                  "covers every slot", cx->text);

    return EX_TEMPFAIL;
}


/*
 * CLUSTER SLOTS: [ [start, end, [host, port, ...], replicas...], ... ].
 * An empty host means the node that answered.  A map with a slot that no
 * master serves (a failover in progress) is refused, and asked again.
 */

static int
pop3ext_cluster_slots(pop3ext_ctx_t *cx, pop3ext_node_t *n, redisReply *r)
{
    int              idx;
    size_t           i;
    unsigned         k, covered, self;
    long long        start, end;
    redisReply      *e, *m;
    unsigned short  *slots;

    if (r->type == REDIS_REPLY_ERROR) {
        pop3ext_error("redis at %s: CLUSTER SLOTS: %.*s", n->name,
                      (int) r->len, r->str);
        return EX_TEMPFAIL;
    }

    if (r->type != REDIS_REPLY_ARRAY) {
        pop3ext_error("redis at %s: unexpected reply to CLUSTER SLOTS",
                      n->name);
        return EX_TEMPFAIL;
    }

    slots = calloc(POP3EXT_CLUSTER_SLOTS, sizeof(unsigned short));
    if (slots == NULL) {
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    /* n may move when nodes are added */
    self = (unsigned) (n - cx->nodes);
    covered = 0;

    for (i = 0; i < r->elements; i++) {
        e = r->element[i];

        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3
            || e->element[0]->type != REDIS_REPLY_INTEGER
            || e->element[1]->type != REDIS_REPLY_INTEGER
            || (m = e->element[2])->type != REDIS_REPLY_ARRAY
            || m->elements < 2
            || m->element[0]->type != REDIS_REPLY_STRING
            || m->element[1]->type != REDIS_REPLY_INTEGER)
        {
            goto unexpected;
        }

        start = e->element[0]->integer;
        end = e->element[1]->integer;

        if (start < 0 || end < start || end >= POP3EXT_CLUSTER_SLOTS
            || m->element[1]->integer <= 0
            || m->element[1]->integer > 65535)
        {
            goto unexpected;
        }

        if (m->element[0]->len == 0) {
            idx = (int) self;

        } else {
            idx = pop3ext_node_add(cx, m->element[0]->str,
                                   m->element[0]->len,
                                   (unsigned) m->element[1]->integer);
            if (idx < 0) {
                free(slots);
                return EX_TEMPFAIL;
            }
        }

        for (k = (unsigned) start; k <= (unsigned) end; k++) {
            if (slots[k] == 0) {
                covered++;
            }

            slots[k] = (unsigned short) (idx + 1);
        }
    }

    if (covered != POP3EXT_CLUSTER_SLOTS) {
        pop3ext_error("redis at %s: %u of %d slots are served",
                      cx->nodes[self].name, covered, POP3EXT_CLUSTER_SLOTS);
        free(slots);
        return EX_TEMPFAIL;
    }

    memcpy(cx->slots, slots, POP3EXT_CLUSTER_SLOTS * sizeof(unsigned short));
    free(slots);

    for (k = 0; k < cx->nnodes; k++) {
        cx->nodes[k].master = 0;
    }

    for (k = 0; k < POP3EXT_CLUSTER_SLOTS; k++) {
        cx->nodes[cx->slots[k] - 1].master = 1;
    }

    return EX_OK;

unexpected:

    pop3ext_error("redis at %s: unexpected reply to CLUSTER SLOTS",
                  cx->nodes[self].name);
    free(slots);

    return EX_TEMPFAIL;
}


/* the model's rule (ngx_mail_pop3_ext_model.h) */

unsigned
pop3ext_key_slot(const char *key, size_t len)
{
    return p3x_key_slot((const unsigned char *) key, len);
}


/*
 * "MOVED slot host:port" or "ASK slot host:port": the node's index, and
 * the slot; -1 if the reply is neither or cannot be read.
 */

static int
pop3ext_redirect(pop3ext_ctx_t *cx, redisReply *r, unsigned *slot)
{
    char           *p, *end, *colon;
    unsigned long   v, port;

    p = r->str;
    end = r->str + r->len;

    if (r->len > 6 && memcmp(p, "MOVED ", 6) == 0) {
        p += 6;

    } else if (r->len > 4 && memcmp(p, "ASK ", 4) == 0) {
        p += 4;

    } else {
        return -1;
    }

    v = 0;

    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');

        if (v >= POP3EXT_CLUSTER_SLOTS) {
            return -1;
        }
    }

    if (p == end || *p++ != ' ') {
        return -1;
    }

    for (colon = end - 1; colon > p && *colon != ':'; colon--) {
        /* void */
    }

    if (colon == p
        || p3x_spec_number(colon + 1, end - colon - 1, 65535, &port) != 0
        || port == 0)
    {
        return -1;
    }

    /* "[::1]:7000" or "::1:7000" from older servers */

    if (*p == '[' && colon[-1] == ']') {
        p++;
        colon--;
    }

    *slot = (unsigned) v;

    return pop3ext_node_add(cx, p, colon - p, (unsigned) port);
}


static int
pop3ext_is_error(redisReply *r, const char *code)
{
    size_t  len;

    len = strlen(code);

    return r->type == REDIS_REPLY_ERROR && r->len >= len
           && memcmp(r->str, code, len) == 0
           && (r->len == len || r->str[len] == ' ');
}


/*
 * Sends one encoded command where it belongs and returns its reply (an
 * error reply included, for the caller to read), or EX_TEMPFAIL.
 *
 * What was not executed is sent again: after MOVED, ASK, TRYAGAIN,
 * CLUSTERDOWN, LOADING, READONLY.  After a lost connection the command
 * may have run: it is sent again only where another server can take it
 * (a cluster's new master, the master Sentinels name now), and
 * cx->resent tells the caller.  Every command of this tool is
 * idempotent, or (DELIVER) recognises its own earlier run.
 */

static int
pop3ext_route(pop3ext_ctx_t *cx, const char *key, int write,
    const char *cmd, size_t len, redisReply **rp)
{
    int                  rc, idx, asking, found;
    unsigned             slot, redirects, wait;
    redisReply          *r;
    pop3ext_node_t      *n;
    unsigned long long   deadline, until;

    static const char    asking_cmd[] = "*1\r\n$6\r\nASKING\r\n";

    rc = pop3ext_connect(cx);
    if (rc != EX_OK) {
        return rc;
    }

    cx->resent = 0;
    asking = -1;
    redirects = 0;
    found = 0;
    wait = 50;
    deadline = pop3ext_now() + POP3EXT_RETRY_TIME;

    slot = (key != NULL) ? pop3ext_key_slot(key, strlen(key)) : 0;

    for ( ;; ) {

        if (asking >= 0) {
            idx = asking;

        } else if (cx->spec.mode == P3X_SPEC_CLUSTER) {
            idx = cx->slots[slot] - 1;

        } else {
            idx = (int) cx->current;
        }

        n = &cx->nodes[idx];

        rc = pop3ext_node_open(cx, n, 1);

        if (rc == EX_OK) {
            until = pop3ext_now() + cx->reply_ms;

            if (asking >= 0) {
                rc = pop3ext_node_send(cx, n, asking_cmd,
                                       sizeof(asking_cmd) - 1, until);

                if (rc == EX_OK) {
                    rc = pop3ext_node_send(cx, n, cmd, len, until);
                }

                if (rc == EX_OK) {
                    rc = pop3ext_node_reply(cx, n, &r, until);

                    if (rc == EX_OK) {
                        freeReplyObject(r);
                    }
                }

                asking = -1;

            } else {
                rc = pop3ext_node_send(cx, n, cmd, len, until);
            }

            if (rc == EX_OK) {
                rc = pop3ext_node_reply(cx, n, &r, until);

                if (rc != EX_OK) {
                    /* sent, no reply: it may have run */
                    cx->resent = 1;
                }
            }
        }

        if (rc != EX_OK) {
            pop3ext_node_close(cx, n);

            if (cx->spec.mode == P3X_SPEC_SENTINEL && !found) {
                found = 1;

                rc = pop3ext_sentinel(cx);
                if (rc != EX_OK) {
                    return rc;
                }

                continue;
            }

            if (cx->spec.mode == P3X_SPEC_CLUSTER
                && pop3ext_now() < deadline)
            {
                pop3ext_sleep(wait);
                wait = wait * 2 > 1000 ? 1000 : wait * 2;

                rc = pop3ext_cluster_map(cx);
                if (rc != EX_OK) {
                    return rc;
                }

                continue;
            }

            return EX_TEMPFAIL;
        }

        if (r->type != REDIS_REPLY_ERROR) {
            if (write) {
                n->dirty = 1;
            }

            *rp = r;
            return EX_OK;
        }

        /* redirections: the command did not run */

        if (cx->spec.mode == P3X_SPEC_CLUSTER
            && (pop3ext_is_error(r, "MOVED") || pop3ext_is_error(r, "ASK")))
        {
            if (++redirects > POP3EXT_REDIRECTS_MAX) {
                pop3ext_error("redis at %s: too many redirections, last: "
                              "%.*s", n->name, (int) r->len, r->str);
                freeReplyObject(r);
                return EX_TEMPFAIL;
            }

            idx = pop3ext_redirect(cx, r, &slot);

            if (idx < 0) {
                pop3ext_error("redis at %s: cannot follow \"%.*s\"",
                              n->name, (int) r->len, r->str);
                freeReplyObject(r);
                return EX_TEMPFAIL;
            }

            if (r->str[0] == 'M') {
                cx->slots[slot] = (unsigned short) (idx + 1);
                cx->nodes[idx].master = 1;

            } else {
                asking = idx;
            }

            freeReplyObject(r);
            continue;
        }

        if (pop3ext_is_error(r, "TRYAGAIN")
            || pop3ext_is_error(r, "CLUSTERDOWN")
            || pop3ext_is_error(r, "LOADING")
            || pop3ext_is_error(r, "MASTERDOWN"))
        {
            if (pop3ext_now() + wait >= deadline) {
                pop3ext_error("redis at %s: %.*s (gave up after %d ms)",
                              n->name, (int) r->len, r->str,
                              POP3EXT_RETRY_TIME);
                freeReplyObject(r);
                return EX_TEMPFAIL;
            }

            freeReplyObject(r);
            pop3ext_sleep(wait);
            wait = wait * 2 > 1000 ? 1000 : wait * 2;

            continue;
        }

        if (pop3ext_is_error(r, "READONLY")) {

            /* the master we know was demoted: find the new one, once */

            if (cx->spec.mode == P3X_SPEC_SENTINEL && !found) {
                freeReplyObject(r);
                found = 1;

                rc = pop3ext_sentinel(cx);
                if (rc != EX_OK) {
                    return rc;
                }

                continue;
            }

            if (cx->spec.mode == P3X_SPEC_CLUSTER
                && ++redirects <= POP3EXT_REDIRECTS_MAX)
            {
                freeReplyObject(r);

                rc = pop3ext_cluster_map(cx);
                if (rc != EX_OK) {
                    return rc;
                }

                continue;
            }
        }

        *rp = r;
        return EX_OK;
    }
}


/*
 * A command given as words, routed by key (NULL: any node, in a cluster
 * the first master); write marks the connection for WAIT.  *rp is the
 * reply, an error reply included.
 */

int
pop3ext_call(pop3ext_ctx_t *cx, const char *key, int write, int argc,
    const char **argv, const size_t *lens, redisReply **rp)
{
    int    len, rc, started;
    char  *cmd;

    len = redisFormatCommandArgv(&cmd, argc, argv, lens);

    if (len < 0) {
        pop3ext_error("out of memory");
        return EX_TEMPFAIL;
    }

    started = pop3ext_defer_begin();

    rc = pop3ext_route(cx, key, write, cmd, (size_t) len, rp);

    pop3ext_defer_end(started, rc != EX_OK);

    /* it may hold a password or a secret */
    explicit_bzero(cmd, (size_t) len);
    redisFreeCommand(cmd);

    return rc;
}


/*
 * A command routed by key, as pop3ext_read() and pop3ext_write() give
 * it: write marks the connection for WAIT; an error reply is
 * EX_TEMPFAIL.
 */

redisReply *
pop3ext_command(pop3ext_ctx_t *cx, int *rc, const char *key, int write,
    const char *fmt, ...)
{
    int          len, started;
    char        *cmd;
    va_list      args;
    redisReply  *r;

    va_start(args, fmt);
    len = redisvFormatCommand(&cmd, fmt, args);
    va_end(args);

    if (len < 0) {
        pop3ext_error("out of memory");
        *rc = EX_TEMPFAIL;
        return NULL;
    }

    started = pop3ext_defer_begin();

    *rc = pop3ext_route(cx, key, write, cmd, (size_t) len, &r);

    pop3ext_defer_end(started, *rc != EX_OK);

    redisFreeCommand(cmd);

    if (*rc != EX_OK) {
        return NULL;
    }

    *rc = pop3ext_check(cx, r);

    return (*rc == EX_OK) ? r : NULL;
}


/* the masters a scan must cover: the one Redis, or every cluster master */

unsigned
pop3ext_masters(pop3ext_ctx_t *cx)
{
    unsigned  i, n;

    if (pop3ext_connect(cx) != EX_OK) {
        return 0;
    }

    if (cx->spec.mode != P3X_SPEC_CLUSTER) {
        return 1;
    }

    n = 0;

    for (i = 0; i < cx->nnodes; i++) {
        n += cx->nodes[i].master;
    }

    return n;
}


/* a command that reads from the m-th master (SCAN), not routed by key */

redisReply *
pop3ext_read_master(pop3ext_ctx_t *cx, int *rc, unsigned m,
    const char *fmt, ...)
{
    int              len;
    char            *cmd;
    va_list          args;
    unsigned         i;
    redisReply      *r;
    pop3ext_node_t  *n;

    n = NULL;

    if (cx->spec.mode != P3X_SPEC_CLUSTER) {
        n = &cx->nodes[cx->current];

    } else {
        for (i = 0; i < cx->nnodes; i++) {
            if (cx->nodes[i].master && m-- == 0) {
                n = &cx->nodes[i];
                break;
            }
        }
    }

    if (n == NULL) {
        pop3ext_error("no master number %u", m);
        *rc = EX_SOFTWARE;
        return NULL;
    }

    *rc = pop3ext_node_open(cx, n, 1);
    if (*rc != EX_OK) {
        return NULL;
    }

    va_start(args, fmt);
    len = redisvFormatCommand(&cmd, fmt, args);
    va_end(args);

    if (len < 0) {
        pop3ext_error("out of memory");
        *rc = EX_TEMPFAIL;
        return NULL;
    }

    *rc = pop3ext_node_send(cx, n, cmd, (size_t) len,
                            pop3ext_now() + cx->reply_ms);

    redisFreeCommand(cmd);

    if (*rc == EX_OK) {
        *rc = pop3ext_node_reply(cx, n, &r, pop3ext_now() + cx->reply_ms);
    }

    if (*rc != EX_OK) {
        pop3ext_node_close(cx, n);
        return NULL;
    }

    *rc = pop3ext_check(cx, r);

    return (*rc == EX_OK) ? r : NULL;
}


/*
 * Calls handler with each batch of keys matching pattern, from SCAN on
 * every master: the one Redis, or each master of a cluster, which holds
 * the keys of its own slots.  SCAN returns a key at least once, not
 * exactly once, so a handler that collects drops duplicates.
 */

int
pop3ext_scan_keys(pop3ext_ctx_t *cx, const char *pattern,
    pop3ext_scan_pt handler, void *data)
{
    int          rc;
    unsigned     m, masters;
    redisReply  *r;
    char         cursor[32];

    masters = pop3ext_masters(cx);

    if (masters == 0) {
        return EX_TEMPFAIL;
    }

    for (m = 0; m < masters; m++) {
        memcpy(cursor, "0", 2);

        do {
            r = pop3ext_read_master(cx, &rc, m, "SCAN %s MATCH %s COUNT %s",
                                    cursor, pattern, POP3EXT_SCAN_COUNT);
            if (r == NULL) {
                return rc;
            }

            if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
                || r->element[0]->type != REDIS_REPLY_STRING
                || r->element[0]->len == 0
                || r->element[0]->len >= sizeof(cursor)
                || r->element[1]->type != REDIS_REPLY_ARRAY)
            {
                pop3ext_error("unexpected reply to SCAN");
                freeReplyObject(r);
                return EX_SOFTWARE;
            }

            memcpy(cursor, r->element[0]->str, r->element[0]->len);
            cursor[r->element[0]->len] = '\0';

            rc = handler(cx, r->element[1], m, masters, data);

            freeReplyObject(r);

            if (rc != EX_OK) {
                return rc;
            }

        } while (strcmp(cursor, "0") != 0);
    }

    return EX_OK;
}


/* EXISTS key: *exists 1 or 0 */

int
pop3ext_exists(pop3ext_ctx_t *cx, const char *key, int *exists)
{
    int          rc;
    redisReply  *r;

    r = pop3ext_read(cx, &rc, key, "EXISTS %s", key);
    if (r == NULL) {
        return rc;
    }

    if (r->type != REDIS_REPLY_INTEGER) {
        pop3ext_error("unexpected reply to EXISTS");
        freeReplyObject(r);
        return EX_SOFTWARE;
    }

    *exists = (r->integer != 0);
    freeReplyObject(r);

    return EX_OK;
}


/* an error reply is a temporary failure, and is freed */

int
pop3ext_check(pop3ext_ctx_t *cx, redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) {
        pop3ext_error("redis at %s: %.*s", cx->last[0] ? cx->last : cx->text,
                      (int) r->len, r->str);
        freeReplyObject(r);
        return EX_TEMPFAIL;
    }

    return EX_OK;
}


/*
 * wait=N: every connection that wrote sends WAIT N wait_timeout, and all
 * must report N replicas.  A written connection that was lost cannot be
 * asked: its writes are unconfirmed, which is a temporary failure too.
 * The writes stay; a delivery tried again with the same --id stores
 * nothing twice.
 */

int
pop3ext_sync(pop3ext_ctx_t *cx)
{
    int              rc;
    unsigned         i;
    redisReply      *r;
    pop3ext_node_t  *n;
    unsigned long    reply_ms;

    if (cx->spec.wait == 0) {
        return EX_OK;
    }

    if (cx->lost_dirty) {
        pop3ext_error("a connection to redis was lost after a write: not "
                      "confirmed by %u replica(s) (wait=%u)",
                      cx->spec.wait, cx->spec.wait);
        return EX_TEMPFAIL;
    }

    reply_ms = cx->reply_ms;
    cx->reply_ms += cx->spec.wait_timeout_ms;

    rc = EX_OK;

    for (i = 0; rc == EX_OK && i < cx->nnodes; i++) {
        n = &cx->nodes[i];

        if (!n->dirty) {
            continue;
        }

        rc = pop3ext_node_call(cx, n, &r, "WAIT %u %lu", cx->spec.wait,
                               cx->spec.wait_timeout_ms);

        if (rc != EX_OK) {
            pop3ext_error("redis at %s: no reply to WAIT: the write is not "
                          "confirmed by %u replica(s)", n->name,
                          cx->spec.wait);
            pop3ext_node_close(cx, n);
            break;
        }

        if (r->type != REDIS_REPLY_INTEGER) {
            pop3ext_error("redis at %s: WAIT: %.*s", n->name,
                          r->type == REDIS_REPLY_ERROR ? (int) r->len : 0,
                          r->type == REDIS_REPLY_ERROR ? r->str : "");
            rc = EX_TEMPFAIL;

        } else if (r->integer < (long long) cx->spec.wait) {
            pop3ext_error("redis at %s: only %lld of %u replica(s) "
                          "confirmed the write within %lu ms (wait=%u): "
                          "try again later", n->name, r->integer,
                          cx->spec.wait, cx->spec.wait_timeout_ms,
                          cx->spec.wait);
            rc = EX_TEMPFAIL;

        } else {
            n->dirty = 0;
        }

        freeReplyObject(r);
    }

    cx->reply_ms = reply_ms;

    return rc;
}
