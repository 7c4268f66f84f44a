
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * The metrics of pop3_ext_metrics_zone over HTTP, in Prometheus' text
 * format: an HTTP content handler in the same shared object as the mail
 * module.
 *
 *   http { server { location = /metrics { pop3_ext_metrics NAME; } } }
 *
 * The zone is named here with size 0 and the mail side's tag, so nginx's
 * ngx_shared_memory_add() returns the zone that pop3_ext_metrics_zone
 * sizes, whichever of mail {} and http {} comes first; a name that
 * mail {} never sizes stops nginx at start ("zero size shared memory
 * zone").  Rendering reads the counters without a lock.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_mail_pop3_ext_metrics.h"


/* the text of a few Redis nodes fits; more make it grow */
#define NGX_HTTP_P3X_METRICS_SIZE  32768
#define NGX_HTTP_P3X_METRICS_MAX   (64 * 1024 * 1024)


typedef struct {
    ngx_shm_zone_t           *zone;
} ngx_http_pop3_ext_metrics_loc_conf_t;


static void *ngx_http_pop3_ext_metrics_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_pop3_ext_metrics_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_pop3_ext_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_pop3_ext_metrics_handler(ngx_http_request_t *r);


static ngx_command_t  ngx_http_pop3_ext_metrics_commands[] = {

    { ngx_string("pop3_ext_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_pop3_ext_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_pop3_ext_metrics_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_pop3_ext_metrics_create_loc_conf,
                                           /* create location configuration */
    ngx_http_pop3_ext_metrics_merge_loc_conf
                                           /* merge location configuration */
};


ngx_module_t  ngx_http_pop3_ext_metrics_module = {
    NGX_MODULE_V1,
    &ngx_http_pop3_ext_metrics_module_ctx, /* module context */
    ngx_http_pop3_ext_metrics_commands,    /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
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
ngx_http_pop3_ext_metrics_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_pop3_ext_metrics_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_pop3_ext_metrics_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->zone = NULL;
     */

    return conf;
}


static char *
ngx_http_pop3_ext_metrics_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_pop3_ext_metrics_loc_conf_t *prev = parent;
    ngx_http_pop3_ext_metrics_loc_conf_t *conf = child;

    if (conf->zone == NULL) {
        conf->zone = prev->zone;
    }

    return NGX_CONF_OK;
}


/* pop3_ext_metrics NAME; */

static char *
ngx_http_pop3_ext_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pop3_ext_metrics_loc_conf_t *mlcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (mlcf->zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    mlcf->zone = ngx_shared_memory_add(cf, &value[1], 0,
                                       &ngx_mail_pop3_ext_metrics_module);
    if (mlcf->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    /* the mail side sets it too: the one seen first must not lack it */
    mlcf->zone->init = ngx_p3x_metrics_init_zone;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_pop3_ext_metrics_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_pop3_ext_metrics_handler(ngx_http_request_t *r)
{
    size_t                                 size;
    u_char                                *last;
    ngx_int_t                              rc;
    ngx_buf_t                             *b;
    ngx_chain_t                            out;
    ngx_http_pop3_ext_metrics_loc_conf_t  *mlcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_pop3_ext_metrics_module);

    /* the text is made whole, then sent: one snapshot per scrape */

    for (size = NGX_HTTP_P3X_METRICS_SIZE; /* void */ ; size *= 2) {

        if (size > NGX_HTTP_P3X_METRICS_MAX) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        b = ngx_create_temp_buf(r->pool, size);
        if (b == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        last = ngx_p3x_metrics_render(mlcf->zone, b->pos, b->end);

        if (last) {
            b->last = last;
            break;
        }
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/plain") - 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
