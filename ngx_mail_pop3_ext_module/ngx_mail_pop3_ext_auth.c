
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * Credential verification.  A SHA512-CRYPT check costs about 1.6 ms, a
 * bcrypt or Argon2 one tens of milliseconds: on the event loop that would
 * stall every session of the worker, so each check runs as a task in an
 * nginx thread pool and the session waits for its completion event.
 *
 * Stored secrets use Dovecot's notation, "{SCHEME}value", so that user
 * databases migrate as they are.  A password (USER/PASS, PLAIN, LOGIN)
 * is checked against any scheme; the challenge-response methods need a
 * secret they can compute with: APOP a {PLAIN} one, CRAM-MD5 a {PLAIN} or
 * {CRAM-MD5} one.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_md5.h>

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#if (NGX_LINUX)
#include <sys/resource.h>
#include <sys/syscall.h>
#endif

#if (NGX_MAIL_POP3_EXT_ARGON2)
#include <argon2.h>
#endif

#include "ngx_mail_pop3_ext_module.h"
#include "ngx_mail_pop3_ext_scheme.h"


/* KiB an Argon2 check may take: 256 MiB, four times Dovecot's default */
#define NGX_P3X_ARGON2_MEMORY_MAX  262144


typedef ngx_int_t (*ngx_p3x_verify_pt)(ngx_str_t *value, ngx_str_t *pw);


struct ngx_p3x_auth_task_s {
    ngx_queue_t               queue;    /* waiting for a free check */
    ngx_thread_pool_t        *pool;
    ngx_p3x_ctx_t            *ctx;      /* NULL once the session is gone */
    ngx_p3x_auth_handler_pt   handler;
    ngx_p3x_auth_method_e     method;
    ngx_str_t                 secret;
    ngx_str_t                 response;
    ngx_str_t                 challenge;
    ngx_int_t                 result;
    uint64_t                  start;    /* for the metrics */
    ngx_thread_task_t         task;
    unsigned                  posted:1;   /* in the pool, not waiting */
};


static u_char *ngx_p3x_auth_copy(ngx_str_t *dst, u_char *p, ngx_str_t *src);
static void ngx_p3x_auth_thread(void *data, ngx_log_t *log);
static ngx_int_t ngx_p3x_auth_split(ngx_str_t *secret, ngx_str_t *scheme,
    ngx_str_t *value);
static ngx_int_t ngx_p3x_auth_post(ngx_p3x_auth_task_t *t);
static void ngx_p3x_auth_done(ngx_event_t *ev);
static void ngx_p3x_auth_free(ngx_p3x_auth_task_t *t);
static ngx_int_t ngx_p3x_verify_crypt(ngx_str_t *value, ngx_str_t *pw);
static ngx_int_t ngx_p3x_verify_plain(ngx_str_t *value, ngx_str_t *pw);
static ngx_int_t ngx_p3x_verify_ssha512(ngx_str_t *value, ngx_str_t *pw);
static ngx_int_t ngx_p3x_verify_ssha256(ngx_str_t *value, ngx_str_t *pw);
static ngx_int_t ngx_p3x_verify_ssha(const EVP_MD *md, ngx_str_t *value,
    ngx_str_t *pw);
static ngx_int_t ngx_p3x_verify_pbkdf2(ngx_str_t *value, ngx_str_t *pw);
static ngx_int_t ngx_p3x_verify_argon2id(ngx_str_t *value, ngx_str_t *pw);
static ngx_int_t ngx_p3x_verify_cram_secret(ngx_str_t *value,
    ngx_str_t *pw);
static ngx_int_t ngx_p3x_verify_apop(ngx_p3x_auth_task_t *t,
    ngx_str_t *scheme, ngx_str_t *value);
static ngx_int_t ngx_p3x_verify_cram_md5(ngx_p3x_auth_task_t *t,
    ngx_str_t *scheme, ngx_str_t *value);
static void ngx_p3x_cram_contexts(ngx_str_t *pw, u_char contexts[32]);
static void ngx_p3x_md5_state_put(u_char *p, ngx_md5_t *md5);
static ngx_int_t ngx_p3x_hex_equal(u_char *digest, size_t len,
    ngx_str_t *hex);
static ngx_int_t ngx_p3x_ct_equal(u_char *a, size_t alen, u_char *b,
    size_t blen);


static ngx_queue_t  ngx_p3x_auth_waiting;
static ngx_uint_t   ngx_p3x_auth_running;
static ngx_uint_t   ngx_p3x_auth_max = 1;


/*
 * How each scheme of the shared table (ngx_mail_pop3_ext_scheme.h: names,
 * prefixes, methods) verifies a password.
 */

static ngx_p3x_verify_pt  ngx_p3x_verify[P3X_SCHEME_N] = {
    [P3X_SCHEME_SHA512_CRYPT] = ngx_p3x_verify_crypt,
    [P3X_SCHEME_SHA256_CRYPT] = ngx_p3x_verify_crypt,
    [P3X_SCHEME_BLF_CRYPT] = ngx_p3x_verify_crypt,
    [P3X_SCHEME_MD5_CRYPT] = ngx_p3x_verify_crypt,
    [P3X_SCHEME_CRYPT] = ngx_p3x_verify_crypt,
    [P3X_SCHEME_ARGON2ID] = ngx_p3x_verify_argon2id,
    [P3X_SCHEME_PBKDF2] = ngx_p3x_verify_pbkdf2,
    [P3X_SCHEME_SSHA512] = ngx_p3x_verify_ssha512,
    [P3X_SCHEME_SSHA256] = ngx_p3x_verify_ssha256,
    [P3X_SCHEME_CRAM_MD5] = ngx_p3x_verify_cram_secret,
    [P3X_SCHEME_PLAIN] = ngx_p3x_verify_plain
};


/*
 * The session gets handler(ctx, NGX_OK) on a match, NGX_DECLINED on a
 * mismatch, NGX_ERROR when the secret cannot serve (unknown scheme, or
 * one the method cannot use).  Everything is copied: the caller may drop
 * its buffers at once.
 */

ngx_int_t
ngx_p3x_auth_verify(ngx_p3x_ctx_t *ctx, ngx_str_t *secret,
    ngx_p3x_auth_method_e method, ngx_str_t *response, ngx_str_t *challenge,
    ngx_p3x_auth_handler_pt handler)
{
    u_char               *p;
    ngx_p3x_auth_task_t  *t;

    t = ngx_calloc(sizeof(ngx_p3x_auth_task_t) + secret->len + 1
                   + response->len + 1 + challenge->len + 1,
                   ctx->connection->log);
    if (t == NULL) {
        return NGX_ERROR;
    }

    /* each copy is NUL-terminated for crypt_r() and friends */

    p = (u_char *) (t + 1);

    p = ngx_p3x_auth_copy(&t->secret, p, secret);
    p = ngx_p3x_auth_copy(&t->response, p, response);
    (void) ngx_p3x_auth_copy(&t->challenge, p, challenge);

    t->ctx = ctx;
    t->handler = handler;
    t->method = method;
    t->result = NGX_ERROR;

    t->task.ctx = t;
    t->task.handler = ngx_p3x_auth_thread;
    t->task.event.handler = ngx_p3x_auth_done;
    t->task.event.data = t;
    t->task.event.log = ngx_cycle->log;

    t->pool = ctx->conf->thread_pool;
    t->start = ngx_p3x_metrics_now();

    if (ngx_p3x_auth_running >= ngx_p3x_auth_max) {
        ngx_queue_insert_tail(&ngx_p3x_auth_waiting, &t->queue);
        ngx_p3x_metrics_auth_queue(1);

    } else if (ngx_p3x_auth_post(t) != NGX_OK) {
        ngx_p3x_auth_free(t);
        return NGX_ERROR;
    }

    ctx->auth_task = t;

    return NGX_OK;
}


/*
 * A worker runs at most ngx_p3x_auth_max checks at once, about its share
 * of the CPUs: more threads would not hash faster, only take the CPU
 * from the event loops (and every session would wait for the scheduler).
 * The others wait here, in order.
 */

void
ngx_p3x_auth_init_worker(ngx_cycle_t *cycle, ngx_uint_t max)
{
    ngx_queue_init(&ngx_p3x_auth_waiting);
    ngx_p3x_auth_running = 0;
    ngx_p3x_auth_max = ngx_max(max, 1);
}


static ngx_int_t
ngx_p3x_auth_post(ngx_p3x_auth_task_t *t)
{
    if (ngx_thread_task_post(t->pool, &t->task) != NGX_OK) {
        return NGX_ERROR;
    }

    t->posted = 1;
    ngx_p3x_auth_running++;

    return NGX_OK;
}


static u_char *
ngx_p3x_auth_copy(ngx_str_t *dst, u_char *p, ngx_str_t *src)
{
    dst->data = p;
    dst->len = src->len;

    if (src->len) {
        p = ngx_cpymem(p, src->data, src->len);
    }

    *p++ = '\0';

    return p;
}


/*
 * The session goes: a check still waiting for a thread is dropped (and
 * its copy of the password wiped) now; one running finds no session when
 * it completes.
 */

void
ngx_p3x_auth_cancel(ngx_p3x_ctx_t *ctx)
{
    ngx_p3x_auth_task_t  *t;

    t = ctx->auth_task;

    if (t == NULL) {
        return;
    }

    ctx->auth_task = NULL;
    t->ctx = NULL;

    if (!t->posted) {
        ngx_queue_remove(&t->queue);
        ngx_p3x_metrics_auth_queue(-1);
        ngx_p3x_auth_free(t);
    }
}


/*
 * Runs in a pool thread: touches nothing but the task.
 *
 * The few threads that hash (see ngx_p3x_auth_init_worker()) are made
 * nicer once, so that an event loop that wakes up gets the CPU first.
 * Not SCHED_IDLE: a preempted idle thread holding the pool's queue lock
 * would stall the event loop that waits for it.
 */

static void
ngx_p3x_auth_thread(void *data, ngx_log_t *log)
{
    ngx_p3x_auth_task_t  *t = data;

    ngx_str_t             scheme, value;
    const p3x_scheme_t   *s;

#if (NGX_LINUX)
    static __thread ngx_uint_t  niced;

    if (!niced) {
        niced = 1;
        (void) setpriority(PRIO_PROCESS, (id_t) syscall(SYS_gettid), 10);
    }
#endif

    if (ngx_p3x_auth_split(&t->secret, &scheme, &value) != NGX_OK) {
        t->result = NGX_ERROR;
        return;
    }

    switch (t->method) {

    case ngx_p3x_auth_apop:
        t->result = ngx_p3x_verify_apop(t, &scheme, &value);
        return;

    case ngx_p3x_auth_cram_md5:
        t->result = ngx_p3x_verify_cram_md5(t, &scheme, &value);
        return;

    default:
        break;
    }

    s = p3x_scheme_find((const char *) scheme.data, scheme.len, 0);

    /* a label must say what the crypt(3) string is: no silent downgrade */

    if (s == NULL
        || !(s->flags & P3X_METHOD_PASSWORD)
        || (s->prefix_len
            && (value.len < s->prefix_len
                || ngx_strncmp(value.data, s->prefix, s->prefix_len) != 0)))
    {
        t->result = NGX_ERROR;
        return;
    }

    t->result = ngx_p3x_verify[s->id](&value, &t->response);
}


static ngx_int_t
ngx_p3x_auth_split(ngx_str_t *secret, ngx_str_t *scheme, ngx_str_t *value)
{
    u_char  *p, *end;

    p = secret->data;
    end = p + secret->len;

    if (p < end && *p == '{') {
        scheme->data = p + 1;

        p = ngx_strlchr(p, end, '}');
        if (p == NULL) {
            return NGX_ERROR;
        }

        scheme->len = p - scheme->data;
        value->data = p + 1;
        value->len = end - value->data;

        return NGX_OK;
    }

    /* no scheme: a crypt(3) string, as Dovecot's default */

    ngx_str_set(scheme, "CRYPT");
    *value = *secret;

    return NGX_OK;
}


static void
ngx_p3x_auth_done(ngx_event_t *ev)
{
    ngx_p3x_auth_task_t  *t = ev->data;

    ngx_queue_t     *q;
    ngx_p3x_ctx_t   *ctx;

    ngx_p3x_auth_running--;

    ngx_p3x_metrics_auth_done(t->start);

    ctx = t->ctx;

    if (ctx) {
        ctx->auth_task = NULL;
        t->handler(ctx, t->result);
    }

    ngx_p3x_auth_free(t);

    /* the next waiting check whose session is still there */

    while (ngx_p3x_auth_running < ngx_p3x_auth_max
           && !ngx_queue_empty(&ngx_p3x_auth_waiting))
    {
        q = ngx_queue_head(&ngx_p3x_auth_waiting);
        ngx_queue_remove(q);
        ngx_p3x_metrics_auth_queue(-1);

        t = ngx_queue_data(q, ngx_p3x_auth_task_t, queue);

        if (t->ctx == NULL) {
            ngx_p3x_auth_free(t);
            continue;
        }

        if (ngx_p3x_auth_post(t) != NGX_OK) {
            ctx = t->ctx;
            ctx->auth_task = NULL;
            t->handler(ctx, NGX_ERROR);
            ngx_p3x_auth_free(t);
        }
    }
}


static void
ngx_p3x_auth_free(ngx_p3x_auth_task_t *t)
{
    ngx_explicit_memzero(t->secret.data, t->secret.len + t->response.len
                                         + t->challenge.len + 3);
    ngx_free(t);
}


static ngx_int_t
ngx_p3x_verify_crypt(ngx_str_t *value, ngx_str_t *pw)
{
    char                *hash;
    ngx_int_t            rc;
    struct crypt_data   *cd;

    /* value and pw are NUL-terminated by ngx_p3x_auth_verify() */

    if (value->len == 0 || ngx_strlen(pw->data) != pw->len) {
        return NGX_DECLINED;
    }

    cd = ngx_calloc(sizeof(struct crypt_data), ngx_cycle->log);
    if (cd == NULL) {
        return NGX_DECLINED;
    }

    hash = crypt_r((char *) pw->data, (char *) value->data, cd);

    if (hash == NULL || hash[0] == '*') {
        rc = NGX_ERROR;

    } else {
        rc = ngx_p3x_ct_equal((u_char *) hash, ngx_strlen(hash),
                              value->data, value->len)
             ? NGX_OK : NGX_DECLINED;
    }

    ngx_explicit_memzero(cd, sizeof(struct crypt_data));
    ngx_free(cd);

    return rc;
}


static ngx_int_t
ngx_p3x_verify_plain(ngx_str_t *value, ngx_str_t *pw)
{
    return ngx_p3x_ct_equal(value->data, value->len, pw->data, pw->len)
           ? NGX_OK : NGX_DECLINED;
}


static ngx_int_t
ngx_p3x_verify_ssha512(ngx_str_t *value, ngx_str_t *pw)
{
    return ngx_p3x_verify_ssha(EVP_sha512(), value, pw);
}


static ngx_int_t
ngx_p3x_verify_ssha256(ngx_str_t *value, ngx_str_t *pw)
{
    return ngx_p3x_verify_ssha(EVP_sha256(), value, pw);
}


/* base64(HASH(password . salt) . salt) */

static ngx_int_t
ngx_p3x_verify_ssha(const EVP_MD *md, ngx_str_t *value, ngx_str_t *pw)
{
    u_char        raw[512], digest[EVP_MAX_MD_SIZE];
    size_t        rawlen, mdlen;
    ngx_int_t     rc;
    unsigned int  dlen;
    EVP_MD_CTX   *mdctx;

    mdlen = EVP_MD_size(md);

    if (ngx_p3x_base64_decoded_len(value->len) > sizeof(raw)
        || ngx_p3x_base64_decode(raw, &rawlen, value->data, value->len)
           != NGX_OK
        || rawlen <= mdlen)
    {
        return NGX_ERROR;
    }

    mdctx = EVP_MD_CTX_new();
    if (mdctx == NULL) {
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;

    if (EVP_DigestInit_ex(mdctx, md, NULL) == 1
        && EVP_DigestUpdate(mdctx, pw->data, pw->len) == 1
        && EVP_DigestUpdate(mdctx, raw + mdlen, rawlen - mdlen) == 1
        && EVP_DigestFinal_ex(mdctx, digest, &dlen) == 1
        && CRYPTO_memcmp(digest, raw, mdlen) == 0)
    {
        rc = NGX_OK;
    }

    EVP_MD_CTX_free(mdctx);

    return rc;
}


/* Dovecot's "$1$SALT$ROUNDS$HEX": PBKDF2-HMAC-SHA1, 20 octets */

static ngx_int_t
ngx_p3x_verify_pbkdf2(ngx_str_t *value, ngx_str_t *pw)
{
    u_char     *p, *salt, *rounds, *hex, *end, out[20];
    ngx_int_t   n;

    p = value->data;
    end = p + value->len;

    if (value->len < 4 || ngx_strncmp(p, "$1$", 3) != 0) {
        return NGX_ERROR;
    }

    salt = p + 3;

    rounds = ngx_strlchr(salt, end, '$');
    if (rounds == NULL) {
        return NGX_ERROR;
    }

    hex = ngx_strlchr(rounds + 1, end, '$');
    if (hex == NULL) {
        return NGX_ERROR;
    }

    n = ngx_atoi(rounds + 1, hex - rounds - 1);

    if (n <= 0 || n > 10000000 || end - (hex + 1) != 40) {
        return NGX_ERROR;
    }

    if (PKCS5_PBKDF2_HMAC((char *) pw->data, pw->len, salt, rounds - salt,
                          n, EVP_sha1(), sizeof(out), out)
        != 1)
    {
        return NGX_DECLINED;
    }

    value->data = hex + 1;
    value->len = 40;

    return ngx_p3x_hex_equal(out, sizeof(out), value)
           ? NGX_OK : NGX_DECLINED;
}


static ngx_int_t
ngx_p3x_verify_argon2id(ngx_str_t *value, ngx_str_t *pw)
{
#if (NGX_MAIL_POP3_EXT_ARGON2)

    int         rc;
    u_char     *p;
    ngx_int_t   m;

    /*
     * The stored string says how much memory a check takes: a forged or
     * careless one must not make each login allocate gigabytes.
     */

    /* the value is NUL-terminated by ngx_p3x_auth_verify() */
    p = ngx_strstrn(value->data, "$m=", 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p += 3;
    m = 0;

    while (p < value->data + value->len && *p >= '0' && *p <= '9') {
        m = m * 10 + (*p++ - '0');

        if (m > NGX_P3X_ARGON2_MEMORY_MAX) {
            return NGX_ERROR;
        }
    }

    rc = argon2id_verify((char *) value->data, pw->data, pw->len);

    if (rc == ARGON2_OK) {
        return NGX_OK;
    }

    return (rc == ARGON2_VERIFY_MISMATCH) ? NGX_DECLINED : NGX_ERROR;

#else

    return NGX_ERROR;

#endif
}


/* a password against Dovecot's {CRAM-MD5}: the HMAC-MD5 contexts */

static ngx_int_t
ngx_p3x_verify_cram_secret(ngx_str_t *value, ngx_str_t *pw)
{
    u_char  contexts[32];

    if (value->len != 64) {
        return NGX_ERROR;
    }

    ngx_p3x_cram_contexts(pw, contexts);

    return ngx_p3x_hex_equal(contexts, sizeof(contexts), value)
           ? NGX_OK : NGX_DECLINED;
}


/* RFC 1939, 7: MD5(timestamp . secret), in lowercase hex */

static ngx_int_t
ngx_p3x_verify_apop(ngx_p3x_auth_task_t *t, ngx_str_t *scheme,
    ngx_str_t *value)
{
    u_char               digest[16];
    ngx_md5_t            md5;
    const p3x_scheme_t  *s;

    s = p3x_scheme_find((const char *) scheme->data, scheme->len, 0);

    if (s == NULL || !(s->flags & P3X_METHOD_APOP)) {
        return NGX_ERROR;
    }

    ngx_md5_init(&md5);
    ngx_md5_update(&md5, t->challenge.data, t->challenge.len);
    ngx_md5_update(&md5, value->data, value->len);
    ngx_md5_final(digest, &md5);

    return ngx_p3x_hex_equal(digest, sizeof(digest), &t->response)
           ? NGX_OK : NGX_DECLINED;
}


/*
 * RFC 2195: HMAC-MD5(secret, challenge).  With {CRAM-MD5} the secret is
 * stored as the two MD5 states after the key blocks, outer then inner,
 * each as four little-endian words (Dovecot's format): the HMAC resumes
 * from them.
 */

static ngx_int_t
ngx_p3x_verify_cram_md5(ngx_p3x_auth_task_t *t, ngx_str_t *scheme,
    ngx_str_t *value)
{
    u_char               contexts[32], inner[16], digest[16], *p;
    ngx_int_t            i, k;
    ngx_md5_t            md5;
    const p3x_scheme_t  *s;

    s = p3x_scheme_find((const char *) scheme->data, scheme->len, 0);

    if (s == NULL || !(s->flags & P3X_METHOD_CRAM_MD5)) {
        return NGX_ERROR;
    }

    /* {PLAIN} holds the password, {CRAM-MD5} the contexts themselves */

    if (s->id == P3X_SCHEME_PLAIN) {
        ngx_p3x_cram_contexts(value, contexts);

    } else if (s->id == P3X_SCHEME_CRAM_MD5 && value->len == 64) {
        for (i = 0; i < 32; i++) {
            k = ngx_hextoi(value->data + 2 * i, 2);
            if (k == NGX_ERROR) {
                return NGX_ERROR;
            }

            contexts[i] = (u_char) k;
        }

    } else {
        return NGX_ERROR;
    }

    /* inner: resume after the ipad block */

    ngx_md5_init(&md5);
    p = contexts + 16;
    md5.a = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t) p[3] << 24;
    md5.b = p[4] | p[5] << 8 | p[6] << 16 | (uint32_t) p[7] << 24;
    md5.c = p[8] | p[9] << 8 | p[10] << 16 | (uint32_t) p[11] << 24;
    md5.d = p[12] | p[13] << 8 | p[14] << 16 | (uint32_t) p[15] << 24;
    md5.bytes = 64;
    ngx_md5_update(&md5, t->challenge.data, t->challenge.len);
    ngx_md5_final(inner, &md5);

    ngx_md5_init(&md5);
    p = contexts;
    md5.a = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t) p[3] << 24;
    md5.b = p[4] | p[5] << 8 | p[6] << 16 | (uint32_t) p[7] << 24;
    md5.c = p[8] | p[9] << 8 | p[10] << 16 | (uint32_t) p[11] << 24;
    md5.d = p[12] | p[13] << 8 | p[14] << 16 | (uint32_t) p[15] << 24;
    md5.bytes = 64;
    ngx_md5_update(&md5, inner, sizeof(inner));
    ngx_md5_final(digest, &md5);

    ngx_explicit_memzero(contexts, sizeof(contexts));

    return ngx_p3x_hex_equal(digest, sizeof(digest), &t->response)
           ? NGX_OK : NGX_DECLINED;
}


static void
ngx_p3x_cram_contexts(ngx_str_t *pw, u_char contexts[32])
{
    u_char      key[64], pad[64], digest[16];
    ngx_uint_t  i;
    ngx_md5_t   md5;

    ngx_memzero(key, sizeof(key));

    if (pw->len > 64) {
        ngx_md5_init(&md5);
        ngx_md5_update(&md5, pw->data, pw->len);
        ngx_md5_final(digest, &md5);
        ngx_memcpy(key, digest, sizeof(digest));

    } else {
        ngx_memcpy(key, pw->data, pw->len);
    }

    for (i = 0; i < 64; i++) {
        pad[i] = key[i] ^ 0x5c;
    }

    ngx_md5_init(&md5);
    ngx_md5_update(&md5, pad, 64);
    ngx_p3x_md5_state_put(contexts, &md5);

    for (i = 0; i < 64; i++) {
        pad[i] = key[i] ^ 0x36;
    }

    ngx_md5_init(&md5);
    ngx_md5_update(&md5, pad, 64);
    ngx_p3x_md5_state_put(contexts + 16, &md5);

    ngx_explicit_memzero(key, sizeof(key));
    ngx_explicit_memzero(pad, sizeof(pad));
}


static void
ngx_p3x_md5_state_put(u_char *p, ngx_md5_t *md5)
{
    uint32_t    w[4];
    ngx_uint_t  i;

    w[0] = md5->a;
    w[1] = md5->b;
    w[2] = md5->c;
    w[3] = md5->d;

    for (i = 0; i < 4; i++) {
        *p++ = (u_char) w[i];
        *p++ = (u_char) (w[i] >> 8);
        *p++ = (u_char) (w[i] >> 16);
        *p++ = (u_char) (w[i] >> 24);
    }
}


/* compares a digest with its hex form, either case, in constant time */

static ngx_int_t
ngx_p3x_hex_equal(u_char *digest, size_t len, ngx_str_t *hex)
{
    u_char  buf[64], low[64];

    if (len > sizeof(buf) / 2 || hex->len != 2 * len) {
        return 0;
    }

    ngx_hex_dump(buf, digest, len);
    ngx_strlow(low, hex->data, hex->len);

    return ngx_p3x_ct_equal(buf, 2 * len, low, hex->len);
}


/* compares in a time that depends on the lengths only */

static ngx_int_t
ngx_p3x_ct_equal(u_char *a, size_t alen, u_char *b, size_t blen)
{
    size_t   i;
    u_char   d;

    if (blen == 0) {
        return alen == 0;
    }

    d = (alen != blen);

    for (i = 0; i < alen; i++) {
        d |= a[i] ^ b[i % blen];
    }

    return d == 0;
}
