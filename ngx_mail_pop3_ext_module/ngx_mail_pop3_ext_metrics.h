
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * Operations: counters in a shared memory zone (pop3_ext_metrics_zone),
 * served in Prometheus' text format by ngx_http_pop3_ext_metrics_module
 * (pop3_ext_metrics), and one line per session in a log of its own
 * (pop3_ext_session_log).
 *
 * The rest of the module calls the hooks below, one call per event.
 * Without a zone a hook costs the test of one pointer; with one, an
 * atomic addition in the zone: every worker of the host adds to the same
 * numbers, and nothing is allocated per event.
 */


#ifndef _NGX_MAIL_POP3_EXT_METRICS_H_INCLUDED_
#define _NGX_MAIL_POP3_EXT_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_mail_pop3_ext_parse.h"


struct ngx_p3x_ctx_s;
struct ngx_p3x_rreq_s;
struct ngx_p3x_rnode_s;
struct ngx_p3x_rconn_s;


/* login results, as the client learned them */
#define NGX_P3X_LOGIN_OK            0
#define NGX_P3X_LOGIN_BAD           1     /* -ERR [AUTH] */
#define NGX_P3X_LOGIN_BLOCKED       2     /* refused by a block, unchecked */
#define NGX_P3X_LOGIN_IN_USE        3
#define NGX_P3X_LOGIN_REDIS         4     /* the mail store failed */
#define NGX_P3X_LOGIN_LIMITED       5     /* too many sessions of the user */
#define NGX_P3X_LOGIN_DELAY         6     /* RFC 2449 LOGIN-DELAY */
#define NGX_P3X_LOGIN_ERROR         7     /* anything else */
#define NGX_P3X_LOGIN_RESULTS       8


/*
 * Deliveries, for the LMTP server (_lmtp.c): one call per recipient whose
 * message went to DELIVER, or was refused for it, with the octets of the
 * message as stored.
 *
 *   NGX_P3X_DELIVERY_STORED     stored (DELIVER's { UID, 1 })
 *   NGX_P3X_DELIVERY_DUPLICATE  the delivery id was stored before: nothing
 *                               stored now ({ UID, 0 })
 *   NGX_P3X_DELIVERY_REJECTED   refused for good (a 5xx reply: no such
 *                               user, over quota, a body DELIVER refuses)
 *   NGX_P3X_DELIVERY_FAILED     failed for now (a 4xx reply: Redis)
 *
 * Only stored messages add to pop3ext_delivered_bytes_total.
 */
#define NGX_P3X_DELIVERY_STORED     0
#define NGX_P3X_DELIVERY_DUPLICATE  1
#define NGX_P3X_DELIVERY_REJECTED   2
#define NGX_P3X_DELIVERY_FAILED     3
#define NGX_P3X_DELIVERIES          4


/* what a session keeps for its metrics and its log line (ctx->stats) */
typedef struct {
    ngx_msec_t                start;
    const char               *tls_protocol;   /* OpenSSL's static names */
    const char               *tls_cipher;
    ngx_uint_t                method;         /* of the last login attempt */
    ngx_uint_t                failed;         /* logins refused */
    unsigned                  active:1;       /* in the sessions gauge */
    unsigned                  ended:1;
    unsigned                  stls:1;         /* STLS handshake under way */
    unsigned                  logged_in:1;
} ngx_p3x_session_stats_t;


/* pop3_ext_session_log, per server */
typedef struct {
    ngx_open_file_t          *session_log;    /* NULL: off */
    ngx_uint_t                session_log_json;
} ngx_mail_pop3_ext_metrics_srv_conf_t;


/* the session: _session.c, _login.c, _output.c, _ssl.c */
void ngx_p3x_metrics_session_start(struct ngx_p3x_ctx_s *ctx);
void ngx_p3x_metrics_stls(struct ngx_p3x_ctx_s *ctx);
void ngx_p3x_metrics_session_tls(struct ngx_p3x_ctx_s *ctx);
void ngx_p3x_metrics_command(struct ngx_p3x_ctx_s *ctx, ngx_p3x_cmd_t *cmd);
void ngx_p3x_metrics_login(struct ngx_p3x_ctx_s *ctx, ngx_uint_t result);
void ngx_p3x_metrics_login_abort(struct ngx_p3x_ctx_s *ctx,
    const char *reply);
void ngx_p3x_metrics_body(struct ngx_p3x_ctx_s *ctx, size_t octets);
void ngx_p3x_session_end(struct ngx_p3x_ctx_s *ctx);

/* credential checks: _auth.c */
uint64_t ngx_p3x_metrics_now(void);
void ngx_p3x_metrics_auth_queue(ngx_int_t delta);
void ngx_p3x_metrics_auth_done(uint64_t start);

/* deliveries: _lmtp.c */
void ngx_p3x_metrics_delivery(ngx_uint_t result, off_t octets);

/* Redis: _redis.c, _redis_topology.c */
void ngx_p3x_metrics_redis_done(struct ngx_p3x_rreq_s *req,
    ngx_uint_t status);
void ngx_p3x_metrics_redis_error(struct ngx_p3x_rnode_s *node,
    const char *text, size_t len);
void ngx_p3x_metrics_redis_redirect(struct ngx_p3x_rnode_s *node,
    ngx_uint_t ask);
void ngx_p3x_metrics_redis_ready(struct ngx_p3x_rconn_s *rc);
void ngx_p3x_metrics_redis_lost(struct ngx_p3x_rconn_s *rc);
void ngx_p3x_metrics_redis_tls(struct ngx_p3x_rconn_s *rc);

/* the HTTP side: ngx_http_pop3_ext_metrics_module.c */
extern ngx_module_t  ngx_mail_pop3_ext_metrics_module;
ngx_int_t ngx_p3x_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data);
u_char *ngx_p3x_metrics_render(ngx_shm_zone_t *shm_zone, u_char *p,
    u_char *last);

/* the session log: _session_log.c, called by _metrics.c */
char *ngx_p3x_session_log_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_p3x_session_log_write(struct ngx_p3x_ctx_s *ctx,
    const char *outcome);


#endif /* _NGX_MAIL_POP3_EXT_METRICS_H_INCLUDED_ */
