
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: the Redis connection.
 */


#include "pop3ext.h"


static int pop3ext_auth(pop3ext_ctx_t *cx);


int
pop3ext_parse_address(pop3ext_ctx_t *cx)
{
    char           *end;
    size_t          len;
    const char     *a, *colon;
    unsigned long   port;

    a = cx->address;

    if (strncmp(a, "unix:", 5) == 0) {
        if (a[5] == '\0') {
            return pop3ext_usage_error("no path in redis address \"%s\"", a);
        }

        cx->path = a + 5;
        return EX_OK;
    }

    colon = strrchr(a, ':');

    if (colon == NULL || colon[1] < '0' || colon[1] > '9') {
        return pop3ext_usage_error("redis address \"%s\" is not HOST:PORT "
                                   "or unix:PATH", a);
    }

    errno = 0;
    port = strtoul(colon + 1, &end, 10);

    if (*end != '\0' || errno != 0 || port == 0 || port > 65535) {
        return pop3ext_usage_error("bad port in redis address \"%s\"", a);
    }

    /* "[::1]:6379" */

    len = colon - a;

    if (len >= 2 && a[0] == '[' && a[len - 1] == ']') {
        a++;
        len -= 2;
    }

    if (len == 0 || len >= POP3EXT_HOST_MAX) {
        return pop3ext_usage_error("bad host in redis address \"%s\"",
                                   cx->address);
    }

    memcpy(cx->host, a, len);
    cx->host[len] = '\0';
    cx->port = (int) port;

    return EX_OK;
}


int
pop3ext_connect(pop3ext_ctx_t *cx)
{
    struct timeval   tv;

    tv.tv_sec = POP3EXT_CONNECT_TIMEOUT;
    tv.tv_usec = 0;

    if (cx->path != NULL) {
        cx->redis = redisConnectUnixWithTimeout(cx->path, tv);

    } else {
        cx->redis = redisConnectWithTimeout(cx->host, cx->port, tv);
    }

    if (cx->redis == NULL) {
        pop3ext_error("cannot connect to redis at %s: out of memory",
                      cx->address);
        return EX_TEMPFAIL;
    }

    if (cx->redis->err) {
        pop3ext_error("cannot connect to redis at %s: %s",
                      cx->address, cx->redis->errstr);
        return EX_TEMPFAIL;
    }

    tv.tv_sec = POP3EXT_COMMAND_TIMEOUT;

    if (redisSetTimeout(cx->redis, tv) != REDIS_OK) {
        pop3ext_error("cannot set a timeout on redis at %s: %s",
                      cx->address, cx->redis->errstr);
        return EX_TEMPFAIL;
    }

    return pop3ext_auth(cx);
}


/*
 * A Redis that requires a password (requirepass, or an ACL user): from
 * the environment, so that it shows in no process list.
 */

static int
pop3ext_auth(pop3ext_ctx_t *cx)
{
    int          rc;
    const char  *user, *password;
    redisReply  *r;

    password = getenv("POP3EXT_REDIS_PASSWORD");
    user = getenv("POP3EXT_REDIS_USER");

    if (password == NULL || password[0] == '\0') {
        return EX_OK;
    }

    if (user != NULL && user[0] != '\0') {
        r = redisCommand(cx->redis, "AUTH %s %s", user, password);

    } else {
        r = redisCommand(cx->redis, "AUTH %s", password);
    }

    rc = pop3ext_check(cx, r);
    if (rc != EX_OK) {
        return rc;
    }

    freeReplyObject(r);

    return EX_OK;
}


/*
 * Checks a reply: a missing reply (I/O error, timeout) or an error reply
 * is a temporary failure.  An error reply is freed.
 */

int
pop3ext_check(pop3ext_ctx_t *cx, redisReply *r)
{
    const char  *reason;

    if (r == NULL) {
        reason = cx->redis->errstr;

        /* hiredis reports SO_RCVTIMEO expiry as a bare EAGAIN */

        if (cx->redis->err == REDIS_ERR_IO
            && strcmp(reason, strerror(EAGAIN)) == 0)
        {
            reason = "timed out";
        }

        pop3ext_error("redis at %s: %s", cx->address,
                      reason[0] != '\0' ? reason : "connection lost");
        return EX_TEMPFAIL;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        pop3ext_error("redis at %s: %.*s", cx->address,
                      (int) r->len, r->str);
        freeReplyObject(r);
        return EX_TEMPFAIL;
    }

    return EX_OK;
}


redisReply *
pop3ext_command(pop3ext_ctx_t *cx, int *rc, const char *fmt, ...)
{
    va_list      args;
    redisReply  *r;

    va_start(args, fmt);
    r = redisvCommand(cx->redis, fmt, args);
    va_end(args);

    *rc = pop3ext_check(cx, r);

    return (*rc == EX_OK) ? r : NULL;
}
