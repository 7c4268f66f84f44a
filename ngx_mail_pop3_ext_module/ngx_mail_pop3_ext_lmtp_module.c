
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * The "pop3_ext_lmtp" mail protocol and its directives.  It is a module
 * of its own in the same shared object, so that "protocol pop3_ext_lmtp"
 * finds it; its servers take pop3_ext_redis (and so the Redis
 * connections of the worker) from ngx_mail_pop3_ext_module.
 */


#include "ngx_mail_pop3_ext_lmtp.h"


static void *ngx_mail_pop3_ext_lmtp_create_srv_conf(ngx_conf_t *cf);
static char *ngx_mail_pop3_ext_lmtp_merge_srv_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_mail_pop3_ext_lmtp_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_conf_enum_t  ngx_mail_pop3_ext_lmtp_recipient[] = {
    { ngx_string("local_part"), NGX_P3X_LMTP_RCPT_LOCAL },
    { ngx_string("address"), NGX_P3X_LMTP_RCPT_ADDRESS },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_mail_pop3_ext_lmtp_commands[] = {

    { ngx_string("pop3_ext_lmtp_allow"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_1MORE,
      ngx_mail_pop3_ext_lmtp_allow,
      NGX_MAIL_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pop3_ext_lmtp_max_size"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_p3x_lmtp_srv_conf_t, max_size),
      NULL },

    { ngx_string("pop3_ext_lmtp_max_recipients"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_p3x_lmtp_srv_conf_t, max_recipients),
      NULL },

    { ngx_string("pop3_ext_lmtp_recipient"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_p3x_lmtp_srv_conf_t, recipient),
      &ngx_mail_pop3_ext_lmtp_recipient },

    { ngx_string("pop3_ext_quota_octets"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_p3x_lmtp_srv_conf_t, quota_octets),
      NULL },

    { ngx_string("pop3_ext_quota_messages"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_p3x_lmtp_srv_conf_t, quota_messages),
      NULL },

    { ngx_string("pop3_ext_lmtp_quota_tempfail"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_p3x_lmtp_srv_conf_t, quota_tempfail),
      NULL },

      ngx_null_command
};


/*
 * The type is SMTP's: only nginx's auth_http and proxy modules read it,
 * and this protocol never calls either (it answers every command
 * itself).  No ports: "listen 24;" without "protocol" stays unclaimed.
 * ALPN: LMTP has no registered name; "lmtp" and "smtp" are both taken
 * rather than failing a client that offers one of them.
 */

ngx_mail_protocol_t  ngx_p3x_lmtp_protocol = {
    ngx_string("pop3_ext_lmtp"),
#if (nginx_version >= 1021000)
    ngx_string("\x04lmtp\x04smtp"),
#endif
    { 0, 0, 0, 0 },
    NGX_MAIL_SMTP_PROTOCOL,

    ngx_p3x_lmtp_init_session,
    ngx_p3x_lmtp_init_protocol,
    ngx_p3x_lmtp_dummy_parse,
    ngx_p3x_lmtp_auth_state,

    ngx_string("451 4.3.0 internal server error" CRLF),
    ngx_string("421 4.7.1 bad client certificate" CRLF),
    ngx_string("421 4.7.1 no required client certificate" CRLF)
};


static ngx_mail_module_t  ngx_mail_pop3_ext_lmtp_module_ctx = {
    &ngx_p3x_lmtp_protocol,                /* protocol */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_mail_pop3_ext_lmtp_create_srv_conf, /* create server configuration */
    ngx_mail_pop3_ext_lmtp_merge_srv_conf  /* merge server configuration */
};


ngx_module_t  ngx_mail_pop3_ext_lmtp_module = {
    NGX_MODULE_V1,
    &ngx_mail_pop3_ext_lmtp_module_ctx,    /* module context */
    ngx_mail_pop3_ext_lmtp_commands,       /* module directives */
    NGX_MAIL_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_mail_pop3_ext_lmtp_create_srv_conf(ngx_conf_t *cf)
{
    ngx_p3x_lmtp_srv_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_p3x_lmtp_srv_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->allow = NGX_CONF_UNSET_PTR;
    conf->max_size = NGX_CONF_UNSET;
    conf->max_recipients = NGX_CONF_UNSET_UINT;
    conf->recipient = NGX_CONF_UNSET_UINT;
    conf->quota_octets = NGX_CONF_UNSET;
    conf->quota_messages = NGX_CONF_UNSET_UINT;
    conf->quota_tempfail = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_mail_pop3_ext_lmtp_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_p3x_lmtp_srv_conf_t *prev = parent;
    ngx_p3x_lmtp_srv_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->allow, prev->allow, NGX_CONF_UNSET_PTR);

    /* mail is taken from the local MTA only, unless said otherwise */

    if (conf->allow == NGX_CONF_UNSET_PTR) {
        conf->allow = ngx_p3x_conf_loopback(cf);
        if (conf->allow == NULL) {
            return NGX_CONF_ERROR;
        }

        prev->allow = conf->allow;
    }

    ngx_conf_merge_off_value(conf->max_size, prev->max_size,
                             50 * 1024 * 1024);
    ngx_conf_merge_uint_value(conf->max_recipients, prev->max_recipients,
                              100);
    ngx_conf_merge_uint_value(conf->recipient, prev->recipient,
                              NGX_P3X_LMTP_RCPT_LOCAL);
    ngx_conf_merge_off_value(conf->quota_octets, prev->quota_octets, 0);
    ngx_conf_merge_uint_value(conf->quota_messages, prev->quota_messages, 0);
    ngx_conf_merge_value(conf->quota_tempfail, prev->quota_tempfail, 0);

    if (conf->max_size < 1 || conf->max_size > 1024 * 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pop3_ext_lmtp_max_size must be 1 to 1g");
        return NGX_CONF_ERROR;
    }

    if (conf->max_recipients < 1 || conf->max_recipients > 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pop3_ext_lmtp_max_recipients must be 1 to 1000");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* pop3_ext_lmtp_allow address/mask ... | all; */

static char *
ngx_mail_pop3_ext_lmtp_allow(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_p3x_lmtp_srv_conf_t  *lcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (lcf->allow != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "all") == 0) {
        lcf->allow = NULL;
        return NGX_CONF_OK;
    }

    lcf->allow = ngx_array_create(cf->pool, 4, sizeof(ngx_cidr_t));
    if (lcf->allow == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_p3x_conf_add_cidr(cf, lcf->allow, &value[i]) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}
