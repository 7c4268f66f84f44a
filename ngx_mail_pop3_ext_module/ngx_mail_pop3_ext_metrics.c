
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * Metrics in a shared memory zone, and the end of a session: its
 * counters and its line in the session log.
 *
 * The zone (pop3_ext_metrics_zone NAME SIZE in mail {}) is an nginx slab
 * pool holding one ngx_p3x_metrics_t: counters, histograms, a slot per
 * worker process for the gauges, and a table of Redis nodes.  Counters
 * are only ever added to, with ngx_atomic_fetch_add(): every worker adds
 * to the same numbers without a lock, and a counter survives the worker
 * that added to it, a crash included.  A gauge (sessions open, checks
 * waiting) is a sum over the slots of the live processes: the slot of a
 * worker that died is left out, and taken over by the next worker.  Redis
 * nodes come and go with failovers and reshards: each gets a row the
 * first time a worker meets it (under the pool's lock, once per worker
 * and node), until the table is full; later nodes share the row
 * node="other".
 *
 * The HTTP side (ngx_http_pop3_ext_metrics_module.c) names the same zone
 * with size 0 and the same tag: nginx's ngx_shared_memory_add() then
 * gives both the one zone, in either order of mail {} and http {}; only
 * this side's size counts.  A reload that keeps the size keeps the
 * counts (the zone is reused, and so is its data).
 */


#include "ngx_mail_pop3_ext_module.h"
#include "ngx_mail_pop3_ext_redis.h"


#define NGX_P3X_METRICS_LE        16
#define NGX_P3X_METRICS_PROCS     256
#define NGX_P3X_METRICS_NAME      128

/* the rows every table has: then the nodes, as they are met */
#define NGX_P3X_ROW_OTHER         0     /* the table was full */
#define NGX_P3X_ROW_NONE          1     /* the request found no node */
#define NGX_P3X_ROWS_FIXED        2

#define NGX_P3X_METHODS           6

#define NGX_P3X_END_QUIT          0
#define NGX_P3X_END_TIMEOUT       1
#define NGX_P3X_END_CLOSED        2
#define NGX_P3X_END_LIMIT         3
#define NGX_P3X_END_LOCK_LOST     4
#define NGX_P3X_END_TLS           5
#define NGX_P3X_END_ERROR         6
#define NGX_P3X_ENDS              7

#define NGX_P3X_COMMIT_OK         0
#define NGX_P3X_COMMIT_PARTIAL    1
#define NGX_P3X_COMMIT_LOCK_LOST  2
#define NGX_P3X_COMMIT_NOTRUN     3
#define NGX_P3X_COMMIT_UNKNOWN    4
#define NGX_P3X_COMMITS           5


/* counts per bucket (not cumulative: that is done when rendering) */
typedef struct {
    ngx_atomic_t              bucket[NGX_P3X_METRICS_LE + 1];
    ngx_atomic_t              sum;              /* microseconds */
} ngx_p3x_metrics_hist_t;


typedef struct {
    ngx_atomic_t              requests[4];      /* by NGX_P3X_REDIS_* */
    ngx_atomic_t              errors[2];        /* reply, connection */
    ngx_atomic_t              redirects[2];     /* MOVED, ASK */
    ngx_atomic_t              reconnects;
    ngx_atomic_t              tls[2];           /* ok, failed */
    ngx_p3x_metrics_hist_t    latency;
    size_t                    name_len;
    u_char                    name[NGX_P3X_METRICS_NAME];
} ngx_p3x_metrics_node_t;


/* written only by the process whose pid it holds */
typedef struct {
    ngx_atomic_t              pid;
    ngx_atomic_t              sessions;
    ngx_atomic_t              auth_waiting;
} ngx_p3x_metrics_proc_t;


typedef struct {
    size_t                    layout;           /* reused only if equal */
    ngx_atomic_t              sessions[NGX_P3X_ENDS];
    ngx_atomic_t              logins[NGX_P3X_METHODS][NGX_P3X_LOGIN_RESULTS];
    ngx_atomic_t              commands[NGX_P3X_CMDS];
    ngx_atomic_t              body[2];          /* RETR, TOP */
    ngx_atomic_t              commits[NGX_P3X_COMMITS];
    ngx_atomic_t              deleted;
    ngx_atomic_t              deleted_bytes;
    ngx_atomic_t              deliveries[NGX_P3X_DELIVERIES];
    ngx_atomic_t              delivered_bytes;
    ngx_atomic_t              tls[2][2];        /* implicit, STLS; ok,
                                                   failed */
    ngx_p3x_metrics_hist_t    auth;
    ngx_p3x_metrics_proc_t    procs[NGX_P3X_METRICS_PROCS];
    ngx_atomic_t              nnodes;           /* rows in use */
    ngx_uint_t                nrows;
    ngx_p3x_metrics_node_t    nodes[1];
} ngx_p3x_metrics_t;


typedef struct {
    const char               *reason;
    ngx_uint_t                end;
} ngx_p3x_metrics_reason_t;


static void *ngx_mail_pop3_ext_metrics_create_main_conf(ngx_conf_t *cf);
static void *ngx_mail_pop3_ext_metrics_create_srv_conf(ngx_conf_t *cf);
static char *ngx_mail_pop3_ext_metrics_merge_srv_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_mail_pop3_ext_metrics_zone(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_mail_pop3_ext_metrics_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_mail_pop3_ext_metrics_init_process(ngx_cycle_t *cycle);
static void ngx_mail_pop3_ext_metrics_exit_process(ngx_cycle_t *cycle);
static void ngx_p3x_metrics_listen(ngx_cycle_t *cycle);
static ngx_uint_t ngx_p3x_metrics_tls_port(ngx_listening_t *ls);
static void ngx_p3x_metrics_accept(ngx_connection_t *c);
static void ngx_p3x_metrics_handshake_gone(void *data);
static ngx_uint_t ngx_p3x_metrics_end(const char *reason);
static void ngx_p3x_metrics_observe(ngx_p3x_metrics_hist_t *h,
    uint64_t usec);
static ngx_p3x_metrics_node_t *ngx_p3x_metrics_row(ngx_p3x_rnode_t *node);
static u_char *ngx_p3x_metrics_head(u_char *p, u_char *last,
    const char *name, const char *type, const char *help);
static u_char *ngx_p3x_metrics_counter(u_char *p, u_char *last,
    const char *name, const char *help, ngx_atomic_uint_t value);
static u_char *ngx_p3x_metrics_counters(u_char *p, u_char *last,
    const char *name, const char *help, const char *label,
    const char **values, ngx_atomic_t *counts, ngx_uint_t n);
static u_char *ngx_p3x_metrics_series(u_char *p, u_char *last,
    const char *name, ngx_str_t *labels, const char *label,
    const char **values, ngx_atomic_t *counts, ngx_uint_t n);
static u_char *ngx_p3x_metrics_hist(u_char *p, u_char *last,
    const char *name, ngx_str_t *labels, ngx_p3x_metrics_hist_t *h);
static u_char *ngx_p3x_metrics_label(u_char *p, u_char *last,
    u_char *value, size_t len);
static u_char *ngx_p3x_metrics_render_nodes(ngx_p3x_metrics_t *m, u_char *p,
    u_char *last);
static ngx_uint_t ngx_p3x_metrics_node_used(ngx_p3x_metrics_node_t *row);


typedef struct {
    ngx_shm_zone_t           *zone;
} ngx_mail_pop3_ext_metrics_main_conf_t;


extern ngx_module_t  ngx_mail_module;


static ngx_command_t  ngx_mail_pop3_ext_metrics_commands[] = {

    { ngx_string("pop3_ext_metrics_zone"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_mail_pop3_ext_metrics_zone,
      NGX_MAIL_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pop3_ext_session_log"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE12,
      ngx_p3x_session_log_set,
      NGX_MAIL_SRV_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_mail_module_t  ngx_mail_pop3_ext_metrics_module_ctx = {
    NULL,                                  /* protocol */

    ngx_mail_pop3_ext_metrics_create_main_conf,
                                           /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_mail_pop3_ext_metrics_create_srv_conf,
                                           /* create server configuration */
    ngx_mail_pop3_ext_metrics_merge_srv_conf
                                           /* merge server configuration */
};


ngx_module_t  ngx_mail_pop3_ext_metrics_module = {
    NGX_MODULE_V1,
    &ngx_mail_pop3_ext_metrics_module_ctx, /* module context */
    ngx_mail_pop3_ext_metrics_commands,    /* module directives */
    NGX_MAIL_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_mail_pop3_ext_metrics_init_module, /* init module */
    ngx_mail_pop3_ext_metrics_init_process, /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_mail_pop3_ext_metrics_exit_process, /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* this worker's view: NULL without a zone, and the hooks do nothing */
static ngx_p3x_metrics_t       *ngx_p3x_metrics;
static ngx_p3x_metrics_proc_t  *ngx_p3x_metrics_proc;
static ngx_slab_pool_t         *ngx_p3x_metrics_pool;


/* histogram bounds: 100 us to 10 s, for Redis and the credential checks */

static uint64_t  ngx_p3x_metrics_le_usec[NGX_P3X_METRICS_LE] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
    500000, 1000000, 2500000, 5000000, 10000000
};

static const char  *ngx_p3x_metrics_le_text[NGX_P3X_METRICS_LE] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
    "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"
};


static const char  *ngx_p3x_metrics_ends[NGX_P3X_ENDS] = {
    "quit", "timeout", "closed", "limit", "lock_lost", "tls_failed", "error"
};


/*
 * Every ctx->end_reason, and how it counts.  A reason missing here (one
 * added later) counts as "error", so that it shows rather than hides.
 */

static ngx_p3x_metrics_reason_t  ngx_p3x_metrics_reasons[] = {
    { "quit", NGX_P3X_END_QUIT },
    { "client timed out", NGX_P3X_END_TIMEOUT },
    { "login timed out", NGX_P3X_END_TIMEOUT },
    { "connection closed", NGX_P3X_END_CLOSED },
    { "too many commands", NGX_P3X_END_LIMIT },
    { "too many errors", NGX_P3X_END_LIMIT },
    { "too many authentication attempts", NGX_P3X_END_LIMIT },
    { "too many connections", NGX_P3X_END_LIMIT },
    { "lock lost", NGX_P3X_END_LOCK_LOST },
    { "TLS handshake failed", NGX_P3X_END_TLS },
    { NULL, NGX_P3X_END_ERROR }
};


static const char  *ngx_p3x_metrics_methods[NGX_P3X_METHODS] = {
    "user", "plain", "login", "cram-md5", "apop", "external"
};

static const char  *ngx_p3x_metrics_results[NGX_P3X_LOGIN_RESULTS] = {
    "ok", "bad_credentials", "blocked", "in_use", "redis_error", "limited",
    "login_delay", "error"
};

static const char  *ngx_p3x_metrics_commits[NGX_P3X_COMMITS] = {
    "ok", "partial", "lock_lost", "notrun", "unknown"
};

static const char  *ngx_p3x_metrics_deliveries[NGX_P3X_DELIVERIES] = {
    "stored", "duplicate", "rejected", "failed"
};

/* a Redis node's: requests by NGX_P3X_REDIS_*, errors, redirections, TLS */

static const char  *ngx_p3x_metrics_outcomes[4] = {
    "ok", "notrun", "unknown", "unacked"
};

static const char  *ngx_p3x_metrics_error_kinds[2] = {
    "reply", "connection"
};

static const char  *ngx_p3x_metrics_redirects[2] = {
    "moved", "ask"
};

static const char  *ngx_p3x_metrics_tls_results[2] = {
    "ok", "failed"
};

static const char  *ngx_p3x_metrics_body_commands[2] = {
    "RETR", "TOP"
};


/*
 * Label values are fixed names, never what a client sent.  A command
 * without a name here (one added to the parser later) counts as "other".
 */

static const char  *ngx_p3x_metrics_command_names[NGX_P3X_CMDS] = {
    [ngx_p3x_cmd_unknown] = "unknown",
    [ngx_p3x_cmd_user] = "USER",
    [ngx_p3x_cmd_pass] = "PASS",
    [ngx_p3x_cmd_apop] = "APOP",
    [ngx_p3x_cmd_auth] = "AUTH",
    [ngx_p3x_cmd_stls] = "STLS",
    [ngx_p3x_cmd_capa] = "CAPA",
    [ngx_p3x_cmd_quit] = "QUIT",
    [ngx_p3x_cmd_noop] = "NOOP",
    [ngx_p3x_cmd_stat] = "STAT",
    [ngx_p3x_cmd_list] = "LIST",
    [ngx_p3x_cmd_retr] = "RETR",
    [ngx_p3x_cmd_dele] = "DELE",
    [ngx_p3x_cmd_rset] = "RSET",
    [ngx_p3x_cmd_top] = "TOP",
    [ngx_p3x_cmd_uidl] = "UIDL",
    [ngx_p3x_cmd_last] = "LAST",
    [ngx_p3x_cmd_utf8] = "UTF8"
};


/* error codes of the model's scripts: answers, not Redis failing */

static ngx_str_t  ngx_p3x_metrics_script_codes[] = {
    ngx_string("IN-USE "),
    ngx_string("GONE "),
    ngx_string("LOCKLOST "),
    ngx_string("LOGIN-DELAY "),
    ngx_string("OVERQUOTA "),
    ngx_string("BADUID "),
    ngx_string("BADBODY "),
    ngx_string("EXISTS "),
    ngx_null_string
};


static void *
ngx_mail_pop3_ext_metrics_create_main_conf(ngx_conf_t *cf)
{
    ngx_mail_pop3_ext_metrics_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool,
                      sizeof(ngx_mail_pop3_ext_metrics_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mcf->zone = NULL;
     */

    return mcf;
}


static void *
ngx_mail_pop3_ext_metrics_create_srv_conf(ngx_conf_t *cf)
{
    ngx_mail_pop3_ext_metrics_srv_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool,
                       sizeof(ngx_mail_pop3_ext_metrics_srv_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->session_log = NGX_CONF_UNSET_PTR;
    conf->session_log_json = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_mail_pop3_ext_metrics_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_mail_pop3_ext_metrics_srv_conf_t *prev = parent;
    ngx_mail_pop3_ext_metrics_srv_conf_t *conf = child;

    /* the file and its format go together */

    if (conf->session_log == NGX_CONF_UNSET_PTR) {
        conf->session_log = prev->session_log;
        conf->session_log_json = prev->session_log_json;
    }

    ngx_conf_init_ptr_value(conf->session_log, NULL);
    ngx_conf_init_uint_value(conf->session_log_json, 0);

    return NGX_CONF_OK;
}


/* pop3_ext_metrics_zone NAME SIZE; */

static char *
ngx_mail_pop3_ext_metrics_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_mail_pop3_ext_metrics_main_conf_t *mcf = conf;

    ssize_t     size;
    ngx_str_t  *value;

    if (mcf->zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    /* the slab pool's own pages, the counters, and a few nodes */

    if (size < (ssize_t) (8 * ngx_pagesize
                          + sizeof(ngx_p3x_metrics_t)
                          + 8 * sizeof(ngx_p3x_metrics_node_t)))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pop3_ext_metrics_zone \"%V\" is too small, "
                           "at least %uzk", &value[1],
                           (8 * ngx_pagesize + sizeof(ngx_p3x_metrics_t)
                            + 8 * sizeof(ngx_p3x_metrics_node_t))
                           / 1024 + 1);
        return NGX_CONF_ERROR;
    }

    mcf->zone = ngx_shared_memory_add(cf, &value[1], size,
                                      &ngx_mail_pop3_ext_metrics_module);
    if (mcf->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    mcf->zone->init = ngx_p3x_metrics_init_zone;

    return NGX_CONF_OK;
}


/*
 * Called by nginx for the mail side's zone and the HTTP side's, which are
 * one: with the old zone's data after a reload that kept its size.
 */

ngx_int_t
ngx_p3x_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    size_t              len, size;
    ngx_uint_t          rows;
    ngx_slab_pool_t    *shpool;
    ngx_p3x_metrics_t  *m;

    if (data) {
        m = data;

        if (m->layout == sizeof(ngx_p3x_metrics_t)) {
            shm_zone->data = data;
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "pop3_ext_metrics_zone \"%V\" was made by another "
                      "version of the module: give it another name",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        return NGX_OK;
    }

    len = sizeof(" in pop3_ext_metrics_zone \"\"") + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc(shpool, len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in pop3_ext_metrics_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* the rest of the pool is the node table: the size sets its rows */

    size = shpool->pfree * ngx_pagesize;

    if (size < sizeof(ngx_p3x_metrics_t)
               + (NGX_P3X_ROWS_FIXED + 1) * sizeof(ngx_p3x_metrics_node_t))
    {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "pop3_ext_metrics_zone \"%V\" is too small",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }

    rows = (size - offsetof(ngx_p3x_metrics_t, nodes))
           / sizeof(ngx_p3x_metrics_node_t);

    size = offsetof(ngx_p3x_metrics_t, nodes)
           + rows * sizeof(ngx_p3x_metrics_node_t);

    m = ngx_slab_calloc(shpool, size);
    if (m == NULL) {
        return NGX_ERROR;
    }

    m->layout = sizeof(ngx_p3x_metrics_t);
    m->nrows = rows;
    m->nnodes = NGX_P3X_ROWS_FIXED;

    m->nodes[NGX_P3X_ROW_OTHER].name_len = sizeof("other") - 1;
    ngx_memcpy(m->nodes[NGX_P3X_ROW_OTHER].name, "other", 5);
    m->nodes[NGX_P3X_ROW_NONE].name_len = sizeof("none") - 1;
    ngx_memcpy(m->nodes[NGX_P3X_ROW_NONE].name, "none", 4);

    shpool->data = m;
    shpool->log_nomem = 0;

    shm_zone->data = m;

    return NGX_OK;
}


/*
 * The zone, once the cycle made it: set in the master, so that workers
 * have it from their first moment (the Redis connections that the main
 * module opens when a worker starts are counted too).
 */

static ngx_int_t
ngx_mail_pop3_ext_metrics_init_module(ngx_cycle_t *cycle)
{
    ngx_mail_conf_ctx_t                    *ctx;
    ngx_mail_pop3_ext_metrics_main_conf_t  *mcf;

    ngx_p3x_metrics = NULL;
    ngx_p3x_metrics_pool = NULL;

    ctx = (ngx_mail_conf_ctx_t *) ngx_get_conf(cycle->conf_ctx,
                                               ngx_mail_module);
    if (ctx == NULL) {
        return NGX_OK;
    }

    mcf = ctx->main_conf[ngx_mail_pop3_ext_metrics_module.ctx_index];

    if (mcf->zone && mcf->zone->data) {
        ngx_p3x_metrics = mcf->zone->data;
        ngx_p3x_metrics_pool = (ngx_slab_pool_t *) mcf->zone->shm.addr;
    }

    return NGX_OK;
}


/*
 * A worker takes a slot for its gauges: a free one, or that of a process
 * that is gone (a crashed worker's, whose sessions went with it).
 */

static ngx_int_t
ngx_mail_pop3_ext_metrics_init_process(ngx_cycle_t *cycle)
{
    ngx_pid_t                pid;
    ngx_uint_t               i;
    ngx_p3x_metrics_t       *m;
    ngx_p3x_metrics_proc_t  *proc;

    ngx_p3x_metrics_proc = NULL;

    m = ngx_p3x_metrics;

    if (m == NULL) {
        return NGX_OK;
    }

    ngx_shmtx_lock(&ngx_p3x_metrics_pool->mutex);

    for (i = 0; i < NGX_P3X_METRICS_PROCS; i++) {
        proc = &m->procs[i];
        pid = (ngx_pid_t) proc->pid;

        if (pid == 0 || (kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH)) {
            proc->pid = ngx_pid;
            proc->sessions = 0;
            proc->auth_waiting = 0;
            ngx_p3x_metrics_proc = proc;
            break;
        }
    }

    ngx_shmtx_unlock(&ngx_p3x_metrics_pool->mutex);

    if (ngx_p3x_metrics_proc == NULL) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "pop3_ext_metrics_zone: more than %d processes, "
                      "the gauges leave this one out",
                      NGX_P3X_METRICS_PROCS);
    }

    ngx_p3x_metrics_listen(cycle);

    return NGX_OK;
}


static void
ngx_mail_pop3_ext_metrics_exit_process(ngx_cycle_t *cycle)
{
    ngx_p3x_metrics_proc_t  *proc;

    proc = ngx_p3x_metrics_proc;

    if (proc == NULL) {
        return;
    }

    ngx_p3x_metrics_proc = NULL;

    proc->sessions = 0;
    proc->auth_waiting = 0;
    ngx_memory_barrier();
    proc->pid = 0;
}


/*
 * Implicit TLS: nginx's mail core does the handshake before any session
 * exists, and closes the connection when it fails, without a word to
 * this module.  So on listening sockets that serve only pop3_ext over
 * TLS, each connection gets a pool cleanup that counts a failure unless
 * the session started (ngx_p3x_metrics_session_start() marks it).  On a
 * port shared with other protocols or plaintext, failures are not seen.
 */

static void
ngx_p3x_metrics_listen(ngx_cycle_t *cycle)
{
    ngx_uint_t        i;
    ngx_listening_t  *ls;

    ls = cycle->listening.elts;

    for (i = 0; i < cycle->listening.nelts; i++) {
        if (ls[i].handler == ngx_mail_init_connection
            && ngx_p3x_metrics_tls_port(&ls[i]))
        {
            ls[i].handler = ngx_p3x_metrics_accept;
        }
    }
}


static ngx_uint_t
ngx_p3x_metrics_tls_port(ngx_listening_t *ls)
{
    ngx_uint_t                 i;
    ngx_mail_port_t           *port;
    ngx_mail_in_addr_t        *addr;
    ngx_mail_addr_conf_t      *conf;
    ngx_mail_core_srv_conf_t  *cscf;
#if (NGX_HAVE_INET6)
    ngx_mail_in6_addr_t       *addr6;
#endif

    port = ls->servers;

    if (port == NULL || port->naddrs == 0) {
        return 0;
    }

    for (i = 0; i < port->naddrs; i++) {

#if (NGX_HAVE_INET6)
        if (ls->sockaddr->sa_family == AF_INET6) {
            addr6 = port->addrs;
            conf = &addr6[i].conf;

        } else
#endif
        {
            addr = port->addrs;
            conf = &addr[i].conf;
        }

        if (!conf->ssl) {
            return 0;
        }

        cscf = conf->ctx->srv_conf[ngx_mail_core_module.ctx_index];

        if (cscf->protocol == NULL
            || cscf->protocol->init_session != ngx_p3x_init_session)
        {
            return 0;
        }
    }

    return 1;
}


static void
ngx_p3x_metrics_accept(ngx_connection_t *c)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(c->pool, 0);

    if (cln) {
        cln->handler = ngx_p3x_metrics_handshake_gone;
        cln->data = NULL;
    }

    ngx_mail_init_connection(c);
}


/* data is set once the session started: the handshake had succeeded */

static void
ngx_p3x_metrics_handshake_gone(void *data)
{
    if (data == NULL && ngx_p3x_metrics) {
        (void) ngx_atomic_fetch_add(&ngx_p3x_metrics->tls[0][1], 1);
    }
}


void
ngx_p3x_metrics_session_start(ngx_p3x_ctx_t *ctx)
{
    ngx_connection_t    *c;
    ngx_pool_cleanup_t  *cln;

    c = ctx->connection;
    ctx->stats.start = ngx_current_msec;

#if (NGX_SSL)
    if (c->ssl) {
        ctx->stats.tls_protocol = SSL_get_version(c->ssl->connection);
        ctx->stats.tls_cipher = SSL_get_cipher_name(c->ssl->connection);
    }
#endif

    if (ngx_p3x_metrics == NULL) {
        return;
    }

#if (NGX_SSL)
    if (c->ssl) {
        (void) ngx_atomic_fetch_add(&ngx_p3x_metrics->tls[0][0], 1);

        for (cln = c->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler == ngx_p3x_metrics_handshake_gone) {
                cln->data = ctx;
            }
        }
    }
#else
    (void) cln;
#endif

    if (ngx_p3x_metrics_proc) {
        (void) ngx_atomic_fetch_add(&ngx_p3x_metrics_proc->sessions, 1);
        ctx->stats.active = 1;
    }
}


/* STLS said, the core starts the handshake */

void
ngx_p3x_metrics_stls(ngx_p3x_ctx_t *ctx)
{
    ctx->stats.stls = 1;
}


/* the session (re)starts: after STLS, the handshake succeeded */

void
ngx_p3x_metrics_session_tls(ngx_p3x_ctx_t *ctx)
{
    ngx_connection_t  *c;

    if (!ctx->stats.stls) {
        return;
    }

    ctx->stats.stls = 0;
    c = ctx->connection;

#if (NGX_SSL)
    if (c->ssl) {
        ctx->stats.tls_protocol = SSL_get_version(c->ssl->connection);
        ctx->stats.tls_cipher = SSL_get_cipher_name(c->ssl->connection);
    }
#endif

#if (NGX_SSL)
    if (ngx_p3x_metrics) {
        (void) ngx_atomic_fetch_add(
                         &ngx_p3x_metrics->tls[1][c->ssl ? 0 : 1], 1);
    }
#endif
}


/*
 * Every command dispatched.  The method of a login is that of the
 * command that starts it (PASS, APOP, AUTH mechanism): SASL responses
 * that follow are not commands.
 */

void
ngx_p3x_metrics_command(ngx_p3x_ctx_t *ctx, ngx_p3x_cmd_t *cmd)
{
    ngx_str_t  *mech;

    switch (cmd->command) {

    case ngx_p3x_cmd_pass:
        ctx->stats.method = 1;
        break;

    case ngx_p3x_cmd_apop:
        ctx->stats.method = 5;
        break;

    case ngx_p3x_cmd_auth:

        if (cmd->nargs == 0) {
            break;
        }

        mech = &cmd->args[0];

        if (mech->len == 5 && ngx_strncasecmp(mech->data, (u_char *) "PLAIN",
                                              5) == 0)
        {
            ctx->stats.method = 2;

        } else if (mech->len == 5
                   && ngx_strncasecmp(mech->data, (u_char *) "LOGIN", 5)
                      == 0)
        {
            ctx->stats.method = 3;

        } else if (mech->len == 8
                   && ngx_strncasecmp(mech->data, (u_char *) "CRAM-MD5", 8)
                      == 0)
        {
            ctx->stats.method = 4;

        } else if (mech->len == 8
                   && ngx_strncasecmp(mech->data, (u_char *) "EXTERNAL", 8)
                      == 0)
        {
            ctx->stats.method = 6;
        }

        break;

    default:
        break;
    }

    if (ngx_p3x_metrics && cmd->command < NGX_P3X_CMDS) {
        (void) ngx_atomic_fetch_add(&ngx_p3x_metrics->commands[cmd->command],
                                    1);
    }
}


void
ngx_p3x_metrics_login(ngx_p3x_ctx_t *ctx, ngx_uint_t result)
{
    if (result == NGX_P3X_LOGIN_OK) {
        ctx->stats.logged_in = 1;

    } else {
        ctx->stats.failed++;
    }

    if (ngx_p3x_metrics && ctx->stats.method && result < NGX_P3X_LOGIN_RESULTS)
    {
        (void) ngx_atomic_fetch_add(
               &ngx_p3x_metrics->logins[ctx->stats.method - 1][result], 1);
    }
}


/*
 * A login attempt that ends with a reply other than success or [AUTH]:
 * counted by the response code the client got (RFC 2449, RFC 3206).
 */

void
ngx_p3x_metrics_login_abort(ngx_p3x_ctx_t *ctx, const char *reply)
{
    ngx_uint_t  result;

    if (ngx_strncmp(reply, "-ERR [IN-USE]", 13) == 0) {
        result = NGX_P3X_LOGIN_IN_USE;

    } else if (ngx_strncmp(reply, "-ERR [LOGIN-DELAY]", 18) == 0) {
        result = NGX_P3X_LOGIN_DELAY;

    } else if (ngx_strncmp(reply, "-ERR [SYS/TEMP] mail store", 26) == 0) {
        result = NGX_P3X_LOGIN_REDIS;

    } else if (ngx_strncmp(reply, "-ERR [SYS/TEMP] too many sessions", 33)
               == 0)
    {
        result = NGX_P3X_LOGIN_LIMITED;

    } else {
        result = NGX_P3X_LOGIN_ERROR;
    }

    ngx_p3x_metrics_login(ctx, result);
}


/* octets of a message sent, as stored (before dot-stuffing) */

void
ngx_p3x_metrics_body(ngx_p3x_ctx_t *ctx, size_t octets)
{
    if (ngx_p3x_metrics && octets) {
        (void) ngx_atomic_fetch_add(
                         &ngx_p3x_metrics->body[ctx->top_lines < 0 ? 0 : 1],
                         octets);
    }
}


/*
 * The end of a session, once: from ngx_p3x_close(), or from the pool
 * cleanup when nginx's core closed the connection (a failed STLS
 * handshake).  What the commit of the UPDATE state did is read from the
 * session: it was counted once, there.
 */

void
ngx_p3x_session_end(ngx_p3x_ctx_t *ctx)
{
    ngx_uint_t                             end, commit;
    ngx_p3x_metrics_t                     *m;
    ngx_mail_pop3_ext_metrics_srv_conf_t  *mscf;

    if (ctx->stats.ended) {
        return;
    }

    ctx->stats.ended = 1;

    m = ngx_p3x_metrics;

    if (ctx->stats.stls) {
        ctx->stats.stls = 0;

        if (ctx->end_reason == NULL) {
            ctx->end_reason = "TLS handshake failed";
        }

        if (m) {
            (void) ngx_atomic_fetch_add(&m->tls[1][1], 1);
        }
    }

    if (ctx->end_reason == NULL) {
        ctx->end_reason = "internal error";
    }

    end = ngx_p3x_metrics_end(ctx->end_reason);

    if (m) {
        (void) ngx_atomic_fetch_add(&m->sessions[end], 1);

        if (ctx->stats.active && ngx_p3x_metrics_proc) {
            (void) ngx_atomic_fetch_add(&ngx_p3x_metrics_proc->sessions,
                                        (ngx_atomic_int_t) -1);
        }

        if (ctx->state == ngx_p3x_state_update) {

            if (ctx->committed) {
                commit = (ctx->removed < ctx->ndeleted)
                         ? NGX_P3X_COMMIT_PARTIAL : NGX_P3X_COMMIT_OK;

                (void) ngx_atomic_fetch_add(&m->deleted, ctx->removed);
                (void) ngx_atomic_fetch_add(&m->deleted_bytes,
                                            ctx->removed_octets);

            } else if (end == NGX_P3X_END_LOCK_LOST) {
                commit = NGX_P3X_COMMIT_LOCK_LOST;

            } else if (ngx_strcmp(ctx->end_reason, "commit not sent") == 0) {
                commit = NGX_P3X_COMMIT_NOTRUN;

            } else {
                commit = NGX_P3X_COMMIT_UNKNOWN;
            }

            (void) ngx_atomic_fetch_add(&m->commits[commit], 1);
        }
    }

    ctx->stats.active = 0;

    mscf = ngx_mail_get_module_srv_conf(ctx->session,
                                        ngx_mail_pop3_ext_metrics_module);

    if (mscf->session_log) {
        ngx_p3x_session_log_write(ctx, ngx_p3x_metrics_ends[end]);
    }
}


static ngx_uint_t
ngx_p3x_metrics_end(const char *reason)
{
    ngx_p3x_metrics_reason_t  *r;

    for (r = ngx_p3x_metrics_reasons; r->reason; r++) {
        if (ngx_strcmp(r->reason, reason) == 0) {
            break;
        }
    }

    return r->end;
}


/* microseconds of a monotonic clock; 0 when nothing is measured */

uint64_t
ngx_p3x_metrics_now(void)
{
#if (NGX_HAVE_CLOCK_MONOTONIC)
    struct timespec  ts;
#else
    struct timeval   tv;
#endif

    if (ngx_p3x_metrics == NULL) {
        return 0;
    }

#if (NGX_HAVE_CLOCK_MONOTONIC)
    (void) clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + 1;
#else
    ngx_gettimeofday(&tv);
    return (uint64_t) tv.tv_sec * 1000000 + tv.tv_usec + 1;
#endif
}


/* checks waiting for a thread of this worker: +1 queued, -1 taken */

void
ngx_p3x_metrics_auth_queue(ngx_int_t delta)
{
    if (ngx_p3x_metrics_proc) {
        (void) ngx_atomic_fetch_add(&ngx_p3x_metrics_proc->auth_waiting,
                                    (ngx_atomic_int_t) delta);
    }
}


/* a check done, from its submission: the wait for a thread included */

void
ngx_p3x_metrics_auth_done(uint64_t start)
{
    if (ngx_p3x_metrics && start) {
        ngx_p3x_metrics_observe(&ngx_p3x_metrics->auth,
                                ngx_p3x_metrics_now() - start);
    }
}


void
ngx_p3x_metrics_delivery(ngx_uint_t result, off_t octets)
{
    if (ngx_p3x_metrics == NULL || result >= NGX_P3X_DELIVERIES) {
        return;
    }

    (void) ngx_atomic_fetch_add(&ngx_p3x_metrics->deliveries[result], 1);

    if (result == NGX_P3X_DELIVERY_STORED && octets > 0) {
        (void) ngx_atomic_fetch_add(&ngx_p3x_metrics->delivered_bytes,
                                    octets);
    }
}


/*
 * A request of a session's (or a clean-up request) is counted once, by
 * the outcome its caller learned, at the node it went to last; req->start
 * is 0 afterwards, and for the client's own requests (AUTH, SCRIPT LOAD,
 * PING), which are not counted.  The latency is from the call to the
 * reply, retries and redirections included.
 */

void
ngx_p3x_metrics_redis_done(ngx_p3x_rreq_t *req, ngx_uint_t status)
{
    ngx_p3x_metrics_node_t  *row;

    if (req->start == 0 || ngx_p3x_metrics == NULL || status > 3) {
        return;
    }

    row = ngx_p3x_metrics_row(req->node);

    (void) ngx_atomic_fetch_add(&row->requests[status], 1);

    if (status == NGX_P3X_REDIS_OK || status == NGX_P3X_REDIS_UNACKED) {
        ngx_p3x_metrics_observe(&row->latency,
                                ngx_p3x_metrics_now() - req->start);
    }

    req->start = 0;
}


/*
 * An error reply.  Redirections are counted on their own, and the error
 * codes of the model's scripts are answers (the maildrop is in use),
 * not failures.
 */

void
ngx_p3x_metrics_redis_error(ngx_p3x_rnode_t *node, const char *text,
    size_t len)
{
    ngx_str_t  *code;

    if (ngx_p3x_metrics == NULL) {
        return;
    }

    if ((len > 6 && ngx_strncmp(text, "MOVED ", 6) == 0)
        || (len > 4 && ngx_strncmp(text, "ASK ", 4) == 0))
    {
        return;
    }

    for (code = ngx_p3x_metrics_script_codes; code->len; code++) {
        if (len >= code->len
            && ngx_strncmp(text, code->data, code->len) == 0)
        {
            return;
        }
    }

    (void) ngx_atomic_fetch_add(&ngx_p3x_metrics_row(node)->errors[0], 1);
}


void
ngx_p3x_metrics_redis_redirect(ngx_p3x_rnode_t *node, ngx_uint_t ask)
{
    if (ngx_p3x_metrics) {
        (void) ngx_atomic_fetch_add(
                         &ngx_p3x_metrics_row(node)->redirects[ask ? 1 : 0],
                         1);
    }
}


/* a connection ready to take requests: a reconnect if one was lost */

void
ngx_p3x_metrics_redis_ready(ngx_p3x_rconn_t *rc)
{
    if (!rc->lost) {
        return;
    }

    rc->lost = 0;

    if (ngx_p3x_metrics) {
        (void) ngx_atomic_fetch_add(
                         &ngx_p3x_metrics_row(rc->node)->reconnects, 1);
    }
}


/*
 * A connection that broke or could not be made (called before it is
 * closed: its state says whether a TLS handshake was under way).
 */

void
ngx_p3x_metrics_redis_lost(ngx_p3x_rconn_t *rc)
{
    ngx_p3x_metrics_node_t  *row;

    rc->lost = 1;

    if (ngx_p3x_metrics == NULL) {
        return;
    }

    row = ngx_p3x_metrics_row(rc->node);

    (void) ngx_atomic_fetch_add(&row->errors[1], 1);

    if (rc->state == ngx_p3x_rconn_handshake) {
        (void) ngx_atomic_fetch_add(&row->tls[1], 1);
    }
}


/* a TLS handshake with Redis done, and its certificate accepted */

void
ngx_p3x_metrics_redis_tls(ngx_p3x_rconn_t *rc)
{
    if (ngx_p3x_metrics) {
        (void) ngx_atomic_fetch_add(&ngx_p3x_metrics_row(rc->node)->tls[0],
                                    1);
    }
}


static void
ngx_p3x_metrics_observe(ngx_p3x_metrics_hist_t *h, uint64_t usec)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_P3X_METRICS_LE; i++) {
        if (usec <= ngx_p3x_metrics_le_usec[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&h->bucket[i], 1);
    (void) ngx_atomic_fetch_add(&h->sum, (ngx_atomic_int_t) usec);
}


/*
 * The row of a node: looked up (or taken) under the pool's lock once per
 * worker and node, then remembered in the node.  The name is written
 * before the row is counted in, so a reader never sees a row half made.
 */

static ngx_p3x_metrics_node_t *
ngx_p3x_metrics_row(ngx_p3x_rnode_t *node)
{
    size_t                   len;
    ngx_uint_t               i, n;
    ngx_p3x_metrics_t       *m;
    ngx_p3x_metrics_node_t  *row;

    m = ngx_p3x_metrics;

    if (node == NULL) {
        return &m->nodes[NGX_P3X_ROW_NONE];
    }

    if (node->metrics) {
        return node->metrics;
    }

    len = ngx_min(node->name.len, NGX_P3X_METRICS_NAME);
    row = NULL;

    ngx_shmtx_lock(&ngx_p3x_metrics_pool->mutex);

    n = m->nnodes;

    for (i = NGX_P3X_ROWS_FIXED; i < n; i++) {
        if (m->nodes[i].name_len == len
            && ngx_memcmp(m->nodes[i].name, node->name.data, len) == 0)
        {
            row = &m->nodes[i];
            break;
        }
    }

    if (row == NULL && n < m->nrows) {
        row = &m->nodes[n];
        ngx_memcpy(row->name, node->name.data, len);
        row->name_len = len;
        ngx_memory_barrier();
        m->nnodes = n + 1;
    }

    ngx_shmtx_unlock(&ngx_p3x_metrics_pool->mutex);

    if (row == NULL) {
        row = &m->nodes[NGX_P3X_ROW_OTHER];
    }

    node->metrics = row;

    return row;
}


/*
 * The zone in Prometheus' text format (version 0.0.4), into [p, last):
 * the end of the text, or NULL when it did not fit.
 */

u_char *
ngx_p3x_metrics_render(ngx_shm_zone_t *shm_zone, u_char *p, u_char *last)
{
    ngx_int_t                n, waiting;
    ngx_pid_t                pid;
    ngx_str_t                none;
    ngx_uint_t               i, j, sum;
    ngx_p3x_metrics_t       *m;
    ngx_p3x_metrics_proc_t  *proc;

    m = shm_zone->data;

    if (m == NULL) {
        return p;
    }

    p = ngx_p3x_metrics_head(p, last, "pop3ext_build_info", "gauge",
                             "The module's version.");
    p = ngx_slprintf(p, last, "pop3ext_build_info{version=\"%s\","
                     "nginx=\"%s\"} 1\n", NGX_P3X_VERSION, NGINX_VERSION);

    /* gauges: the slots of the processes that are alive */

    n = 0;
    waiting = 0;

    for (i = 0; i < NGX_P3X_METRICS_PROCS; i++) {
        proc = &m->procs[i];
        pid = (ngx_pid_t) proc->pid;

        if (pid == 0 || (kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH)) {
            continue;
        }

        n += (ngx_atomic_int_t) proc->sessions;
        waiting += (ngx_atomic_int_t) proc->auth_waiting;
    }

    p = ngx_p3x_metrics_head(p, last, "pop3ext_sessions_active", "gauge",
                             "POP3 sessions open now.");
    p = ngx_slprintf(p, last, "pop3ext_sessions_active %i\n",
                     ngx_max(n, 0));

    p = ngx_p3x_metrics_counters(p, last, "pop3ext_sessions_total",
                                 "POP3 sessions ended, by how they ended.",
                                 "outcome", ngx_p3x_metrics_ends,
                                 m->sessions, NGX_P3X_ENDS);

    p = ngx_p3x_metrics_head(p, last, "pop3ext_logins_total", "counter",
                             "Login attempts, by method and result.");

    for (i = 0; i < NGX_P3X_METHODS; i++) {
        for (j = 0; j < NGX_P3X_LOGIN_RESULTS; j++) {
            p = ngx_slprintf(p, last, "pop3ext_logins_total{method=\"%s\","
                             "result=\"%s\"} %uA\n",
                             ngx_p3x_metrics_methods[i],
                             ngx_p3x_metrics_results[j], m->logins[i][j]);
        }
    }

    p = ngx_p3x_metrics_head(p, last, "pop3ext_commands_total", "counter",
                             "Commands received, by name.");

    sum = 0;

    for (i = 0; i < NGX_P3X_CMDS; i++) {
        if (ngx_p3x_metrics_command_names[i] == NULL) {
            sum += m->commands[i];
            continue;
        }

        p = ngx_slprintf(p, last, "pop3ext_commands_total{command=\"%s\"} "
                         "%uA\n", ngx_p3x_metrics_command_names[i],
                         m->commands[i]);
    }

    p = ngx_slprintf(p, last, "pop3ext_commands_total{command=\"other\"} "
                     "%ui\n", sum);

    p = ngx_p3x_metrics_counters(p, last, "pop3ext_message_sent_bytes_total",
                                 "Octets of messages sent by RETR and TOP, "
                                 "as stored (before dot-stuffing).",
                                 "command", ngx_p3x_metrics_body_commands,
                                 m->body, 2);

    p = ngx_p3x_metrics_counters(p, last, "pop3ext_commits_total",
                                 "UPDATE states (QUIT after login), by what "
                                 "the commit did.",
                                 "result", ngx_p3x_metrics_commits,
                                 m->commits, NGX_P3X_COMMITS);

    p = ngx_p3x_metrics_counter(p, last, "pop3ext_deleted_messages_total",
                                "Messages the commits removed.",
                                m->deleted);

    p = ngx_p3x_metrics_counter(p, last, "pop3ext_deleted_bytes_total",
                                "Octets of the messages the commits "
                                "removed.", m->deleted_bytes);

    p = ngx_p3x_metrics_counters(p, last, "pop3ext_deliveries_total",
                                 "Deliveries (LMTP), one per recipient, by "
                                 "result.",
                                 "result", ngx_p3x_metrics_deliveries,
                                 m->deliveries, NGX_P3X_DELIVERIES);

    p = ngx_p3x_metrics_counter(p, last, "pop3ext_delivered_bytes_total",
                                "Octets of the messages stored by "
                                "deliveries.", m->delivered_bytes);

    p = ngx_p3x_metrics_head(p, last, "pop3ext_tls_handshakes_total",
                             "counter", "TLS handshakes with clients, by "
                             "mode (implicit: listen ... ssl; stls) and "
                             "result.");
    p = ngx_slprintf(p, last,
                     "pop3ext_tls_handshakes_total{mode=\"implicit\","
                     "result=\"ok\"} %uA\n"
                     "pop3ext_tls_handshakes_total{mode=\"implicit\","
                     "result=\"failed\"} %uA\n"
                     "pop3ext_tls_handshakes_total{mode=\"stls\","
                     "result=\"ok\"} %uA\n"
                     "pop3ext_tls_handshakes_total{mode=\"stls\","
                     "result=\"failed\"} %uA\n",
                     m->tls[0][0], m->tls[0][1], m->tls[1][0], m->tls[1][1]);

    p = ngx_p3x_metrics_head(p, last, "pop3ext_auth_queue_length", "gauge",
                             "Credential checks waiting for a thread.");
    p = ngx_slprintf(p, last, "pop3ext_auth_queue_length %i\n",
                     ngx_max(waiting, 0));

    ngx_str_null(&none);

    p = ngx_p3x_metrics_head(p, last, "pop3ext_auth_check_duration_seconds",
                             "histogram", "Credential checks, from their "
                             "submission to their result.");
    p = ngx_p3x_metrics_hist(p, last, "pop3ext_auth_check_duration_seconds",
                             &none, &m->auth);

    p = ngx_p3x_metrics_render_nodes(m, p, last);

    return p == last ? NULL : p;
}


/* the Redis metrics, a series per node that has a count */

static u_char *
ngx_p3x_metrics_render_nodes(ngx_p3x_metrics_t *m, u_char *p, u_char *last)
{
    u_char                  *l;
    ngx_str_t                labels;
    ngx_uint_t               i, n, k;
    ngx_p3x_metrics_node_t  *row;
    u_char                   text[2 * NGX_P3X_METRICS_NAME + 16];

    static const char  *names[] = {
        "pop3ext_redis_requests_total",
        "pop3ext_redis_errors_total",
        "pop3ext_redis_redirections_total",
        "pop3ext_redis_reconnects_total",
        "pop3ext_redis_tls_handshakes_total",
        "pop3ext_redis_request_duration_seconds"
    };

    static const char  *help[] = {
        "Requests to Redis, by node and the outcome the module learned.",
        "Error replies from Redis (kind=reply; not the scripts' own "
        "answers, nor redirections) and connections lost or not made "
        "(kind=connection).",
        "Cluster redirections (MOVED, ASK), by the node that sent them.",
        "Connections to Redis made again after one was lost.",
        "TLS handshakes with Redis, by result.",
        "Requests to Redis answered, from the call to the reply."
    };

    static const char  *types[] = {
        "counter", "counter", "counter", "counter", "counter", "histogram"
    };

    n = m->nnodes;
    ngx_memory_barrier();

    for (k = 0; k < 6; k++) {

        p = ngx_p3x_metrics_head(p, last, names[k], types[k], help[k]);

        for (i = 0; i < n; i++) {
            row = &m->nodes[i];

            if (i < NGX_P3X_ROWS_FIXED && !ngx_p3x_metrics_node_used(row)) {
                continue;
            }

            l = ngx_p3x_metrics_label(text, text + sizeof(text), row->name,
                                      row->name_len);
            labels.data = text;
            labels.len = l - text;

            switch (k) {

            case 0:
                p = ngx_p3x_metrics_series(p, last, names[k], &labels,
                                           "outcome",
                                           ngx_p3x_metrics_outcomes,
                                           row->requests, 4);
                break;

            case 1:
                p = ngx_p3x_metrics_series(p, last, names[k], &labels,
                                           "kind",
                                           ngx_p3x_metrics_error_kinds,
                                           row->errors, 2);
                break;

            case 2:
                p = ngx_p3x_metrics_series(p, last, names[k], &labels,
                                           "type",
                                           ngx_p3x_metrics_redirects,
                                           row->redirects, 2);
                break;

            case 3:
                p = ngx_slprintf(p, last, "%s{%V} %uA\n",
                                 names[k], &labels, row->reconnects);
                break;

            case 4:
                p = ngx_p3x_metrics_series(p, last, names[k], &labels,
                                           "result",
                                           ngx_p3x_metrics_tls_results,
                                           row->tls, 2);
                break;

            default:
                p = ngx_p3x_metrics_hist(p, last, names[k], &labels,
                                         &row->latency);
            }
        }
    }

    return p;
}


/* "other" and "none" are shown once something was counted there */

static ngx_uint_t
ngx_p3x_metrics_node_used(ngx_p3x_metrics_node_t *row)
{
    ngx_uint_t  i;

    for (i = 0; i < 4; i++) {
        if (row->requests[i]) {
            return 1;
        }
    }

    return row->errors[0] || row->errors[1] || row->redirects[0]
           || row->redirects[1] || row->reconnects || row->tls[0]
           || row->tls[1];
}


static u_char *
ngx_p3x_metrics_head(u_char *p, u_char *last, const char *name,
    const char *type, const char *help)
{
    return ngx_slprintf(p, last, "# HELP %s %s\n# TYPE %s %s\n",
                        name, help, name, type);
}


/* a counter without labels */

static u_char *
ngx_p3x_metrics_counter(u_char *p, u_char *last, const char *name,
    const char *help, ngx_atomic_uint_t value)
{
    p = ngx_p3x_metrics_head(p, last, name, "counter", help);

    return ngx_slprintf(p, last, "%s %uA\n", name, value);
}


/* a counter by one label */

static u_char *
ngx_p3x_metrics_counters(u_char *p, u_char *last, const char *name,
    const char *help, const char *label, const char **values,
    ngx_atomic_t *counts, ngx_uint_t n)
{
    ngx_str_t  none;

    ngx_str_null(&none);

    p = ngx_p3x_metrics_head(p, last, name, "counter", help);

    return ngx_p3x_metrics_series(p, last, name, &none, label, values,
                                  counts, n);
}


/*
 * A series for each of the label's n values, after the labels that all
 * of them have (none, or a Redis node's).
 */

static u_char *
ngx_p3x_metrics_series(u_char *p, u_char *last, const char *name,
    ngx_str_t *labels, const char *label, const char **values,
    ngx_atomic_t *counts, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        p = ngx_slprintf(p, last, "%s{%V%s%s=\"%s\"} %uA\n", name, labels,
                         labels->len ? "," : "", label, values[i],
                         counts[i]);
    }

    return p;
}


/* cumulative buckets, the sum in seconds, the count */

static u_char *
ngx_p3x_metrics_hist(u_char *p, u_char *last, const char *name,
    ngx_str_t *labels, ngx_p3x_metrics_hist_t *h)
{
    ngx_uint_t         i, count;
    ngx_atomic_uint_t  sum;

    count = 0;

    for (i = 0; i < NGX_P3X_METRICS_LE; i++) {
        count += h->bucket[i];
        p = ngx_slprintf(p, last, "%s_bucket{%V%sle=\"%s\"} %ui\n",
                         name, labels, labels->len ? "," : "",
                         ngx_p3x_metrics_le_text[i], count);
    }

    count += h->bucket[NGX_P3X_METRICS_LE];
    sum = h->sum;

    p = ngx_slprintf(p, last, "%s_bucket{%V%sle=\"+Inf\"} %ui\n",
                     name, labels, labels->len ? "," : "", count);

    if (labels->len) {
        return ngx_slprintf(p, last, "%s_sum{%V} %uA.%06uA\n"
                            "%s_count{%V} %ui\n",
                            name, labels, sum / 1000000, sum % 1000000,
                            name, labels, count);
    }

    return ngx_slprintf(p, last, "%s_sum %uA.%06uA\n%s_count %ui\n",
                        name, sum / 1000000, sum % 1000000, name, count);
}


/* node="VALUE", escaped as the text format wants */

static u_char *
ngx_p3x_metrics_label(u_char *p, u_char *last, u_char *value, size_t len)
{
    size_t  i;

    p = ngx_slprintf(p, last, "node=\"");

    for (i = 0; i < len && last - p > 3; i++) {
        switch (value[i]) {

        case '\\':
        case '"':
            *p++ = '\\';
            *p++ = value[i];
            break;

        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;

        default:
            *p++ = value[i];
        }
    }

    return ngx_slprintf(p, last, "\"");
}
