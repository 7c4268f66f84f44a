
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * Configuration: the "pop3_ext" mail protocol, its directives, and the
 * worker start that opens the Redis connections.
 */


#include "ngx_mail_pop3_ext_module.h"
#include "ngx_mail_pop3_ext_spec.h"


static void *ngx_mail_pop3_ext_create_main_conf(ngx_conf_t *cf);
static char *ngx_mail_pop3_ext_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_mail_pop3_ext_create_srv_conf(ngx_conf_t *cf);
static char *ngx_mail_pop3_ext_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_mail_pop3_ext_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_mail_pop3_ext_auth_concurrency(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_mail_pop3_ext_expire(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_p3x_redis_t *ngx_mail_pop3_ext_add_redis(ngx_conf_t *cf,
    ngx_p3x_redis_t *want, ngx_str_t *addrs, ngx_uint_t naddrs);
static ngx_int_t ngx_mail_pop3_ext_redis_ssl(ngx_conf_t *cf,
    ngx_mail_pop3_ext_main_conf_t *mcf);
static char *ngx_mail_pop3_ext_secure_networks(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_mail_pop3_ext_str_eq(ngx_str_t *a, ngx_str_t *b);
static ngx_int_t ngx_mail_pop3_ext_init_process(ngx_cycle_t *cycle);
static void ngx_mail_pop3_ext_exit_process(ngx_cycle_t *cycle);
static ngx_mail_pop3_ext_main_conf_t *ngx_mail_pop3_ext_cycle_conf(
    ngx_cycle_t *cycle);


extern ngx_module_t  ngx_mail_module;


static ngx_conf_num_bounds_t  ngx_mail_pop3_ext_line_bounds = {
    ngx_conf_check_num_bounds, 255, 65536
};


static ngx_conf_bitmask_t  ngx_mail_pop3_ext_auth_methods[] = {
    { ngx_string("user"), NGX_P3X_AUTH_USER },
    { ngx_string("plain"), NGX_P3X_AUTH_PLAIN },
    { ngx_string("login"), NGX_P3X_AUTH_LOGIN },
    { ngx_string("cram-md5"), NGX_P3X_AUTH_CRAM_MD5 },
    { ngx_string("apop"), NGX_P3X_AUTH_APOP },
    { ngx_string("external"), NGX_P3X_AUTH_EXTERNAL },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_mail_pop3_ext_plaintext[] = {
    { ngx_string("secure"), NGX_P3X_PLAINTEXT_SECURE },
    { ngx_string("always"), NGX_P3X_PLAINTEXT_ALWAYS },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_mail_pop3_ext_commands[] = {

    { ngx_string("pop3_ext_redis"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_1MORE,
      ngx_mail_pop3_ext_redis,
      NGX_MAIL_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pop3_ext_redis_ssl_trusted_certificate"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_main_conf_t, redis_ssl_trusted),
      NULL },

    { ngx_string("pop3_ext_redis_ssl_certificate"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_main_conf_t, redis_ssl_certificate),
      NULL },

    { ngx_string("pop3_ext_redis_ssl_certificate_key"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_main_conf_t, redis_ssl_certificate_key),
      NULL },

    { ngx_string("pop3_ext_redis_ssl_name"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_main_conf_t, redis_ssl_name),
      NULL },

    { ngx_string("pop3_ext_redis_ssl_verify"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_main_conf_t, redis_ssl_verify),
      NULL },

    { ngx_string("pop3_ext_redis_ssl_server_name"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_main_conf_t, redis_ssl_server_name),
      NULL },

    { ngx_string("pop3_ext_login_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, login_timeout),
      NULL },

    { ngx_string("pop3_ext_idle_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, idle_timeout),
      NULL },

    { ngx_string("pop3_ext_login_delay"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, login_delay),
      NULL },

    { ngx_string("pop3_ext_expire"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE12,
      ngx_mail_pop3_ext_expire,
      NGX_MAIL_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pop3_ext_lock_ttl"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, lock_ttl),
      NULL },

    { ngx_string("pop3_ext_lock_refresh"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, lock_refresh),
      NULL },

    { ngx_string("pop3_ext_auth"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, auth_methods),
      &ngx_mail_pop3_ext_auth_methods },

    { ngx_string("pop3_ext_plaintext_auth"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, plaintext),
      &ngx_mail_pop3_ext_plaintext },

    { ngx_string("pop3_ext_secure_networks"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_1MORE,
      ngx_mail_pop3_ext_secure_networks,
      NGX_MAIL_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pop3_ext_auth_fail_delay"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, auth_fail_delay),
      NULL },

    { ngx_string("pop3_ext_auth_fail_delay_max"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, auth_fail_delay_max),
      NULL },

    { ngx_string("pop3_ext_auth_block_addr"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, auth_block_addr),
      NULL },

    { ngx_string("pop3_ext_auth_block_user"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, auth_block_user),
      NULL },

    { ngx_string("pop3_ext_auth_block_time"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, auth_block_time),
      NULL },

    { ngx_string("pop3_ext_max_auth_attempts"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, max_auth_attempts),
      NULL },

    { ngx_string("pop3_ext_max_conn_per_addr"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, max_conn_per_addr),
      NULL },

    { ngx_string("pop3_ext_max_conn_per_user"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, max_conn_per_user),
      NULL },

    { ngx_string("pop3_ext_sasl_line_max"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, sasl_line_max),
      &ngx_mail_pop3_ext_line_bounds },

    { ngx_string("pop3_ext_chunk_size"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, chunk_size),
      NULL },

    { ngx_string("pop3_ext_line_max"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, line_max),
      &ngx_mail_pop3_ext_line_bounds },

    { ngx_string("pop3_ext_max_commands"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, max_commands),
      NULL },

    { ngx_string("pop3_ext_auth_concurrency"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_mail_pop3_ext_auth_concurrency,
      NGX_MAIL_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pop3_ext_thread_pool"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_pop3_ext_srv_conf_t, thread_pool_name),
      NULL },

      ngx_null_command
};


static ngx_mail_protocol_t  ngx_mail_pop3_ext_protocol = {
    ngx_string("pop3_ext"),
#if (nginx_version >= 1021000)
    ngx_string("\x04pop3"),
#endif
    { 0, 0, 0, 0 },                 /* ports 110/995 stay the stock pop3's */
    NGX_MAIL_POP3_PROTOCOL,

    ngx_p3x_init_session,
    ngx_p3x_init_protocol,
    ngx_p3x_dummy_parse,
    ngx_p3x_auth_state,

    ngx_string("-ERR [SYS/TEMP] internal server error" CRLF),
    ngx_string("-ERR [SYS/PERM] bad client certificate" CRLF),
    ngx_string("-ERR [SYS/PERM] no required client certificate" CRLF)
};


static ngx_mail_module_t  ngx_mail_pop3_ext_module_ctx = {
    &ngx_mail_pop3_ext_protocol,           /* protocol */

    ngx_mail_pop3_ext_create_main_conf,    /* create main configuration */
    ngx_mail_pop3_ext_init_main_conf,      /* init main configuration */

    ngx_mail_pop3_ext_create_srv_conf,     /* create server configuration */
    ngx_mail_pop3_ext_merge_srv_conf       /* merge server configuration */
};


ngx_module_t  ngx_mail_pop3_ext_module = {
    NGX_MODULE_V1,
    &ngx_mail_pop3_ext_module_ctx,         /* module context */
    ngx_mail_pop3_ext_commands,            /* module directives */
    NGX_MAIL_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_mail_pop3_ext_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_mail_pop3_ext_exit_process,        /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_mail_pop3_ext_default_redis =
    ngx_string("127.0.0.1:6379");
static ngx_str_t  ngx_mail_pop3_ext_default_pool = ngx_string("default");


static void *
ngx_mail_pop3_ext_create_main_conf(ngx_conf_t *cf)
{
    ngx_mail_pop3_ext_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_mail_pop3_ext_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&mcf->redis, cf->pool, 2, sizeof(ngx_p3x_redis_t *))
        != NGX_OK)
    {
        return NULL;
    }

    mcf->auth_concurrency = NGX_CONF_UNSET;
    mcf->redis_ssl_verify = NGX_CONF_UNSET;
    mcf->redis_ssl_server_name = NGX_CONF_UNSET;

    if (ngx_p3x_scripts_init() != NGX_OK) {
        return NULL;
    }

    return mcf;
}


static char *
ngx_mail_pop3_ext_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_mail_pop3_ext_main_conf_t *mcf = conf;

    ngx_conf_init_value(mcf->redis_ssl_verify, 1);
    ngx_conf_init_value(mcf->redis_ssl_server_name, 1);

    if (ngx_mail_pop3_ext_redis_ssl(cf, mcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * One TLS client context for every pop3_ext_redis with "tls": nginx's
 * own SSL code, its trusted certificates, an optional client certificate.
 */

static ngx_int_t
ngx_mail_pop3_ext_redis_ssl(ngx_conf_t *cf, ngx_mail_pop3_ext_main_conf_t *mcf)
{
    ngx_uint_t           i, tls;
    ngx_p3x_redis_t    **rp;
#if (NGX_SSL)
    ngx_pool_cleanup_t  *cln;
#endif

    rp = mcf->redis.elts;
    tls = 0;

    for (i = 0; i < mcf->redis.nelts; i++) {
        tls |= rp[i]->tls;
    }

    if (!tls) {
        return NGX_OK;
    }

#if (NGX_SSL)

    mcf->redis_ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (mcf->redis_ssl == NULL) {
        return NGX_ERROR;
    }

    mcf->redis_ssl->log = cf->log;

    if (ngx_ssl_create(mcf->redis_ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(mcf->redis_ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = mcf->redis_ssl;

    if (mcf->redis_ssl_verify) {
        if (mcf->redis_ssl_trusted.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pop3_ext_redis with \"tls\" needs "
                               "pop3_ext_redis_ssl_trusted_certificate "
                               "(or pop3_ext_redis_ssl_verify off)");
            return NGX_ERROR;
        }

        if (ngx_ssl_trusted_certificate(cf, mcf->redis_ssl,
                                        &mcf->redis_ssl_trusted, 4)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (mcf->redis_ssl_certificate.len) {
        if (mcf->redis_ssl_certificate_key.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "no pop3_ext_redis_ssl_certificate_key for "
                               "the client certificate \"%V\"",
                               &mcf->redis_ssl_certificate);
            return NGX_ERROR;
        }

        if (ngx_ssl_certificate(cf, mcf->redis_ssl,
                                &mcf->redis_ssl_certificate,
                                &mcf->redis_ssl_certificate_key, NULL)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < mcf->redis.nelts; i++) {
        if (!rp[i]->tls) {
            continue;
        }

        rp[i]->ssl = mcf->redis_ssl;
        rp[i]->ssl_verify = mcf->redis_ssl_verify ? 1 : 0;
        rp[i]->ssl_server_name = mcf->redis_ssl_server_name ? 1 : 0;
        rp[i]->ssl_name = mcf->redis_ssl_name;
    }

    return NGX_OK;

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "pop3_ext_redis \"tls\" needs nginx built with SSL");
    return NGX_ERROR;

#endif
}


static void *
ngx_mail_pop3_ext_create_srv_conf(ngx_conf_t *cf)
{
    ngx_mail_pop3_ext_srv_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_mail_pop3_ext_srv_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->redis = NULL;
     *     conf->auth_methods = 0;
     *     conf->thread_pool_name = { 0, NULL };
     */

    conf->idle_timeout = NGX_CONF_UNSET_MSEC;
    conf->login_timeout = NGX_CONF_UNSET_MSEC;
    conf->login_delay = NGX_CONF_UNSET_MSEC;
    conf->expire = NGX_CONF_UNSET;
    conf->expire_user_min = NGX_CONF_UNSET;
    conf->lock_ttl = NGX_CONF_UNSET_MSEC;
    conf->lock_refresh = NGX_CONF_UNSET_MSEC;
    conf->plaintext = NGX_CONF_UNSET_UINT;
    conf->secure_networks = NGX_CONF_UNSET_PTR;
    conf->auth_fail_delay = NGX_CONF_UNSET_MSEC;
    conf->auth_fail_delay_max = NGX_CONF_UNSET_MSEC;
    conf->auth_block_addr = NGX_CONF_UNSET_UINT;
    conf->auth_block_user = NGX_CONF_UNSET_UINT;
    conf->auth_block_time = NGX_CONF_UNSET_MSEC;
    conf->max_auth_attempts = NGX_CONF_UNSET_UINT;
    conf->max_conn_per_addr = NGX_CONF_UNSET_UINT;
    conf->max_conn_per_user = NGX_CONF_UNSET_UINT;
    conf->chunk_size = NGX_CONF_UNSET_SIZE;
    conf->line_max = NGX_CONF_UNSET_SIZE;
    conf->sasl_line_max = NGX_CONF_UNSET_SIZE;
    conf->max_commands = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_mail_pop3_ext_merge_srv_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_mail_pop3_ext_srv_conf_t *prev = parent;
    ngx_mail_pop3_ext_srv_conf_t *conf = child;

    ngx_p3x_redis_t            want;
    ngx_mail_core_srv_conf_t  *cscf;

    /* the core merged first: the server's protocol is known */
    cscf = ngx_mail_conf_get_module_srv_conf(cf, ngx_mail_core_module);

    if (conf->redis == NULL) {
        conf->redis = prev->redis;
    }

    if (cscf->protocol != &ngx_mail_pop3_ext_protocol
        && cscf->protocol != &ngx_p3x_lmtp_protocol)
    {
        return NGX_CONF_OK;
    }

    if (conf->redis == NULL) {
        ngx_memzero(&want, sizeof(ngx_p3x_redis_t));
        want.nconns = 2;
        want.timeout = 5000;
        want.wait_timeout = 1000;

        conf->redis = ngx_mail_pop3_ext_add_redis(cf, &want,
                                        &ngx_mail_pop3_ext_default_redis, 1);
        if (conf->redis == NULL) {
            return NGX_CONF_ERROR;
        }

        prev->redis = conf->redis;
    }

    /* an LMTP server takes its Redis from here, the rest from _lmtp */

    if (cscf->protocol != &ngx_mail_pop3_ext_protocol) {
        return NGX_CONF_OK;
    }

    /* RFC 1939: an autologout timer of at least 10 minutes */
    ngx_conf_merge_msec_value(conf->idle_timeout, prev->idle_timeout,
                              600000);
    ngx_conf_merge_msec_value(conf->lock_ttl, prev->lock_ttl, 30000);

    /* how soon an idle session learns that pop3ext kick took its lock */
    ngx_conf_merge_msec_value(conf->lock_refresh, prev->lock_refresh, 5000);

    /* slow clients cannot hold a connection forever before login */
    ngx_conf_merge_msec_value(conf->login_timeout, prev->login_timeout,
                              60000);
    ngx_conf_merge_msec_value(conf->login_delay, prev->login_delay, 0);

    /* both parameters come from the one directive that gave the days */

    if (conf->expire == NGX_CONF_UNSET) {
        conf->expire = prev->expire;
        conf->expire_user_min = prev->expire_user_min;
    }

    if (conf->expire == NGX_CONF_UNSET) {
        conf->expire = NGX_P3X_EXPIRE_NEVER;
        conf->expire_user_min = NGX_P3X_EXPIRE_NEVER;
    }
    ngx_conf_merge_bitmask_value(conf->auth_methods, prev->auth_methods,
                                 (NGX_CONF_BITMASK_SET|NGX_P3X_AUTH_USER
                                  |NGX_P3X_AUTH_PLAIN|NGX_P3X_AUTH_LOGIN));
    ngx_conf_merge_uint_value(conf->plaintext, prev->plaintext,
                              NGX_P3X_PLAINTEXT_SECURE);
    ngx_conf_merge_ptr_value(conf->secure_networks, prev->secure_networks,
                             NULL);

    /* as Dovecot: loopback is secure unless said otherwise */

    if (conf->secure_networks == NULL) {
        conf->secure_networks = ngx_p3x_conf_loopback(cf);
        if (conf->secure_networks == NULL) {
            return NGX_CONF_ERROR;
        }

        prev->secure_networks = conf->secure_networks;
    }

    ngx_conf_merge_msec_value(conf->auth_fail_delay, prev->auth_fail_delay,
                              2000);
    ngx_conf_merge_msec_value(conf->auth_fail_delay_max,
                              prev->auth_fail_delay_max, 15000);
    ngx_conf_merge_uint_value(conf->auth_block_addr, prev->auth_block_addr,
                              20);
    ngx_conf_merge_uint_value(conf->auth_block_user, prev->auth_block_user,
                              0);
    ngx_conf_merge_msec_value(conf->auth_block_time, prev->auth_block_time,
                              900000);
    ngx_conf_merge_uint_value(conf->max_auth_attempts,
                              prev->max_auth_attempts, 3);
    ngx_conf_merge_uint_value(conf->max_conn_per_addr,
                              prev->max_conn_per_addr, 0);
    ngx_conf_merge_uint_value(conf->max_conn_per_user,
                              prev->max_conn_per_user, 0);
    ngx_conf_merge_size_value(conf->chunk_size, prev->chunk_size, 65536);
    ngx_conf_merge_size_value(conf->line_max, prev->line_max, 1024);
    ngx_conf_merge_size_value(conf->sasl_line_max, prev->sasl_line_max,
                              2048);
    ngx_conf_merge_uint_value(conf->max_commands, prev->max_commands, 0);
    ngx_conf_merge_str_value(conf->thread_pool_name, prev->thread_pool_name,
                             "default");

    if (conf->auth_block_time < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pop3_ext_auth_block_time must be at least 1s");
        return NGX_CONF_ERROR;
    }

    if (conf->idle_timeout < 600000) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "pop3_ext_idle_timeout below 10m breaks "
                           "RFC 1939's autologout minimum");
    }

    if (conf->lock_ttl < 3000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pop3_ext_lock_ttl must be at least 3s");
        return NGX_CONF_ERROR;
    }

    if (conf->lock_refresh < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pop3_ext_lock_refresh must be at least 1s");
        return NGX_CONF_ERROR;
    }

    /* two renewals may fail before the lock runs out */
    conf->lock_refresh = ngx_min(conf->lock_refresh, conf->lock_ttl / 3);

    if (conf->chunk_size < 1024 || conf->chunk_size > 16 * 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pop3_ext_chunk_size must be 1k to 16m");
        return NGX_CONF_ERROR;
    }

    if (conf->thread_pool_name.len == 0) {
        conf->thread_pool_name = ngx_mail_pop3_ext_default_pool;
    }

    conf->thread_pool = ngx_thread_pool_add(cf, &conf->thread_pool_name);
    if (conf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* pop3_ext_secure_networks address/mask ... | off; */

static char *
ngx_mail_pop3_ext_secure_networks(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_mail_pop3_ext_srv_conf_t  *pscf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (pscf->secure_networks != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    pscf->secure_networks = ngx_array_create(cf->pool, 4, sizeof(ngx_cidr_t));
    if (pscf->secure_networks == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        return NGX_CONF_OK;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_p3x_conf_add_cidr(cf, pscf->secure_networks, &value[i])
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * The networks of pop3_ext_secure_networks and pop3_ext_lmtp_allow
 * (_lmtp_module.c): an address/mask added to a, or a configuration error.
 */

ngx_int_t
ngx_p3x_conf_add_cidr(ngx_conf_t *cf, ngx_array_t *a, ngx_str_t *text)
{
    ngx_int_t    rc;
    ngx_cidr_t  *cidr;

    cidr = ngx_array_push(a);
    if (cidr == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_ptocidr(text, cidr);

    if (rc == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid network \"%V\"", text);
        return NGX_ERROR;
    }

    if (rc == NGX_DONE) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "low address bits of %V are meaningless", text);
    }

    return NGX_OK;
}


/*
 * Loopback, IPv4 and IPv6: the default of pop3_ext_secure_networks and
 * of pop3_ext_lmtp_allow, the one network both trust untold.
 */

ngx_array_t *
ngx_p3x_conf_loopback(ngx_conf_t *cf)
{
    ngx_array_t  *a;

    static ngx_str_t  loopback4 = ngx_string("127.0.0.0/8");
#if (NGX_HAVE_INET6)
    static ngx_str_t  loopback6 = ngx_string("::1/128");
#endif

    a = ngx_array_create(cf->pool, 2, sizeof(ngx_cidr_t));
    if (a == NULL) {
        return NULL;
    }

    if (ngx_p3x_conf_add_cidr(cf, a, &loopback4) != NGX_OK) {
        return NULL;
    }

#if (NGX_HAVE_INET6)
    if (ngx_p3x_conf_add_cidr(cf, a, &loopback6) != NGX_OK) {
        return NULL;
    }
#endif

    return a;
}


/* pop3_ext_auth_concurrency number | auto; */

static char *
ngx_mail_pop3_ext_auth_concurrency(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_mail_pop3_ext_main_conf_t  *mcf = conf;

    ngx_str_t  *value;

    if (mcf->auth_concurrency != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "auto") == 0) {
        mcf->auth_concurrency = 0;
        return NGX_CONF_OK;
    }

    mcf->auth_concurrency = ngx_atoi(value[1].data, value[1].len);

    if (mcf->auth_concurrency == NGX_ERROR || mcf->auth_concurrency < 1) {
        return "invalid value";
    }

    return NGX_CONF_OK;
}


/*
 * pop3_ext_expire days | never [user_min=days];
 *
 * user_min=: the least a user's own retention may be (the user record's
 * "expire"), which CAPA must announce before login (RFC 2449, 6.7); by
 * default users may only keep mail longer than the server.
 */

static char *
ngx_mail_pop3_ext_expire(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_mail_pop3_ext_srv_conf_t  *pscf = conf;

    ngx_str_t  *value, s;

    if (pscf->expire != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    pscf->expire = ngx_p3x_retention_parse(value[1].data, value[1].len);

    if (pscf->expire == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid retention \"%V\": days from 0 to %d, "
                           "or \"never\"", &value[1], P3X_EXPIRE_DAYS_MAX);
        return NGX_CONF_ERROR;
    }

    pscf->expire_user_min = pscf->expire;

    if (cf->args->nelts == 2) {
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[2].data, "user_min=", 9) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    s.data = value[2].data + 9;
    s.len = value[2].len - 9;

    pscf->expire_user_min = ngx_p3x_retention_parse(s.data, s.len);

    if (pscf->expire_user_min == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid user_min \"%V\": days from 0 to %d, "
                           "or \"never\"", &s, P3X_EXPIRE_DAYS_MAX);
        return NGX_CONF_ERROR;
    }

    /* users without their own value have the server's: it is a bound */

    if (pscf->expire_user_min > pscf->expire) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "user_min \"%V\" is longer than the retention "
                           "\"%V\"", &s, &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * pop3_ext_redis ADDRESS... [cluster | sentinel=NAME] [tls] [user=U]
 *                [password=P] [wait=N] [wait_timeout=time]
 *                [connections=N] [timeout=time];
 *
 * Several addresses are Cluster seeds or Sentinels, never a way to split
 * data.  Servers naming the same Redis share its connections.
 */

static char *
ngx_mail_pop3_ext_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_mail_pop3_ext_srv_conf_t  *pscf = conf;

    char              err[P3X_SPEC_ERR_LEN];
    size_t            lens[P3X_SPEC_WORDS_MAX];
    ngx_str_t        *value, *addrs;
    ngx_uint_t        i, n;
    const char       *words[P3X_SPEC_WORDS_MAX];
    p3x_spec_t        spec;
    ngx_p3x_redis_t   want;

    if (pscf->redis) {
        return "is duplicate";
    }

    value = cf->args->elts;
    n = cf->args->nelts - 1;

    if (n > P3X_SPEC_WORDS_MAX) {
        return "has too many parameters";
    }

    for (i = 0; i < n; i++) {
        words[i] = (const char *) value[i + 1].data;
        lens[i] = value[i + 1].len;
    }

    /* one grammar, shared with pop3ext (ngx_mail_pop3_ext_spec.h) */

    if (p3x_spec_parse(&spec, (int) n, words, lens, err, sizeof(err)) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "pop3_ext_redis: %s", err);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&want, sizeof(ngx_p3x_redis_t));

    want.mode = (spec.mode == P3X_SPEC_CLUSTER) ? NGX_P3X_REDIS_CLUSTER
                : (spec.mode == P3X_SPEC_SENTINEL) ? NGX_P3X_REDIS_SENTINEL
                : NGX_P3X_REDIS_SINGLE;
    want.sentinel_name.data = (u_char *) spec.sentinel;
    want.sentinel_name.len = spec.sentinel_len;
    want.tls = spec.tls ? 1 : 0;
    want.user.data = (u_char *) spec.user;
    want.user.len = spec.user_len;
    want.password.data = (u_char *) spec.password;
    want.password.len = spec.password_len;
    want.wait = spec.wait;
    want.wait_timeout = spec.wait_timeout_ms;
    want.timeout = spec.timeout_ms;
    want.nconns = spec.connections;

    if (want.wait && want.wait_timeout >= want.timeout) {
        return "needs wait_timeout= shorter than timeout=";
    }

    addrs = ngx_palloc(cf->pool, spec.naddrs * sizeof(ngx_str_t));
    if (addrs == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < spec.naddrs; i++) {
        addrs[i].data = (u_char *) spec.addrs[i].text;
        addrs[i].len = spec.addrs[i].text_len;
    }

    pscf->redis = ngx_mail_pop3_ext_add_redis(cf, &want, addrs, spec.naddrs);
    if (pscf->redis == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the same Redis (by its addresses) must be described the same way */

static ngx_p3x_redis_t *
ngx_mail_pop3_ext_add_redis(ngx_conf_t *cf, ngx_p3x_redis_t *want,
    ngx_str_t *addrs, ngx_uint_t naddrs)
{
    u_char                         *p;
    size_t                          len;
    ngx_url_t                       u;
    ngx_uint_t                      i;
    ngx_addr_t                     *addr;
    ngx_p3x_redis_t                *r, **rp;
    ngx_mail_pop3_ext_main_conf_t  *mcf;

    mcf = ngx_mail_conf_get_module_main_conf(cf, ngx_mail_pop3_ext_module);

    /* the name, for logs and sharing: addresses and mode, no secrets */

    len = sizeof(" sentinel=") + want->sentinel_name.len
          + sizeof(" cluster");

    for (i = 0; i < naddrs; i++) {
        len += addrs[i].len + 1;
    }

    want->name.data = ngx_pnalloc(cf->pool, len);
    if (want->name.data == NULL) {
        return NULL;
    }

    p = want->name.data;

    for (i = 0; i < naddrs; i++) {
        p = ngx_sprintf(p, "%s%V", i ? " " : "", &addrs[i]);
    }

    if (want->mode == NGX_P3X_REDIS_CLUSTER) {
        p = ngx_cpymem(p, " cluster", sizeof(" cluster") - 1);

    } else if (want->mode == NGX_P3X_REDIS_SENTINEL) {
        p = ngx_sprintf(p, " sentinel=%V", &want->sentinel_name);
    }

    want->name.len = p - want->name.data;

    rp = mcf->redis.elts;

    for (i = 0; i < mcf->redis.nelts; i++) {
        r = rp[i];

        if (!ngx_mail_pop3_ext_str_eq(&r->name, &want->name)) {
            continue;
        }

        if (r->nconns != want->nconns || r->timeout != want->timeout
            || r->wait != want->wait || r->wait_timeout != want->wait_timeout
            || r->tls != want->tls
            || !ngx_mail_pop3_ext_str_eq(&r->user, &want->user)
            || !ngx_mail_pop3_ext_str_eq(&r->password, &want->password))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "redis \"%V\" is used with different "
                               "parameters elsewhere", &want->name);
            return NULL;
        }

        return r;
    }

    r = ngx_pcalloc(cf->pool, sizeof(ngx_p3x_redis_t));
    if (r == NULL) {
        return NULL;
    }

    *r = *want;

    r->addrs = ngx_array_create(cf->pool, naddrs, sizeof(ngx_addr_t));
    if (r->addrs == NULL) {
        return NULL;
    }

    /* addresses are resolved here, never on the event loop */

    for (i = 0; i < naddrs; i++) {
        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url = addrs[i];
        u.default_port = (want->mode == NGX_P3X_REDIS_SENTINEL) ? 26379
                                                                 : 6379;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
            if (u.err) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "%s in redis \"%V\"", u.err, &u.url);
            }

            return NULL;
        }

        if (u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "redis \"%V\" has no address", &u.url);
            return NULL;
        }

        addr = ngx_array_push(r->addrs);
        if (addr == NULL) {
            return NULL;
        }

        *addr = u.addrs[0];
        addr->name = addrs[i];
    }

    rp = ngx_array_push(&mcf->redis);
    if (rp == NULL) {
        return NULL;
    }

    *rp = r;

    return r;
}


/* empty strings may have no data pointer at all */

static ngx_int_t
ngx_mail_pop3_ext_str_eq(ngx_str_t *a, ngx_str_t *b)
{
    return a->len == b->len
           && (a->len == 0 || ngx_strncmp(a->data, b->data, a->len) == 0);
}


static ngx_int_t
ngx_mail_pop3_ext_init_process(ngx_cycle_t *cycle)
{
    ngx_int_t                       n;
    ngx_uint_t                      i;
    ngx_core_conf_t                *ccf;
    ngx_p3x_redis_t               **rp;
    ngx_mail_pop3_ext_main_conf_t  *mcf;

    mcf = ngx_mail_pop3_ext_cycle_conf(cycle);
    if (mcf == NULL) {
        return NGX_OK;
    }

    rp = mcf->redis.elts;

    for (i = 0; i < mcf->redis.nelts; i++) {
        if (ngx_p3x_redis_init_worker(cycle, rp[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    /* auto: the worker's share of the CPUs */

    n = mcf->auth_concurrency;

    if (n <= 0) {
        ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx,
                                               ngx_core_module);
        n = ngx_ncpu / ngx_max(ccf->worker_processes, 1);
    }

    ngx_p3x_auth_init_worker(cycle, ngx_max(n, 1));

    return NGX_OK;
}


/* the Redis connections go last, after every session they served */

static void
ngx_mail_pop3_ext_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i;
    ngx_p3x_redis_t               **rp;
    ngx_mail_pop3_ext_main_conf_t  *mcf;

    mcf = ngx_mail_pop3_ext_cycle_conf(cycle);
    if (mcf == NULL) {
        return;
    }

    rp = mcf->redis.elts;

    for (i = 0; i < mcf->redis.nelts; i++) {
        ngx_p3x_redis_exit_worker(rp[i]);
    }
}


static ngx_mail_pop3_ext_main_conf_t *
ngx_mail_pop3_ext_cycle_conf(ngx_cycle_t *cycle)
{
    ngx_mail_conf_ctx_t  *ctx;

    ctx = (ngx_mail_conf_ctx_t *) ngx_get_conf(cycle->conf_ctx,
                                               ngx_mail_module);
    if (ctx == NULL) {
        return NULL;
    }

    return ctx->main_conf[ngx_mail_pop3_ext_module.ctx_index];
}
