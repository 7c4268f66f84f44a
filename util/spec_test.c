
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * Unit test of the Redis specification parser (ngx_mail_pop3_ext_spec.h),
 * the grammar shared by the pop3_ext_redis directive and pop3ext -r.
 * Prints TAP; t/015-spec.t builds and runs it, and so does "make unit".
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_mail_pop3_ext_spec.h"


static int  test_n;
static int  test_failed;


static void ok(int cond, const char *name, const char *spec,
    const char *err);
static int parse(p3x_spec_t *sp, const char *spec, char *err,
    size_t errlen);
static int str_is(const char *p, size_t len, const char *want);
static void good(const char *spec);
static void bad(const char *spec, const char *want);


static void
ok(int cond, const char *name, const char *spec, const char *err)
{
    test_n++;

    printf("%sok %d - %s: \"%s\"\n", cond ? "" : "not ", test_n, name, spec);

    if (!cond) {
        test_failed++;
        printf("#   error text: \"%s\"\n", err);
    }
}


/* the way pop3ext does it: one string, split on spaces */

static int
parse(p3x_spec_t *sp, const char *spec, char *err, size_t errlen)
{
    int           n;
    size_t        lens[P3X_SPEC_WORDS_MAX];
    const char   *argv[P3X_SPEC_WORDS_MAX];

    n = p3x_spec_split(spec, strlen(spec), argv, lens, P3X_SPEC_WORDS_MAX);
    if (n < 0) {
        snprintf(err, errlen, "too many words");
        return -1;
    }

    return p3x_spec_parse(sp, n, argv, lens, err, errlen);
}


static int
str_is(const char *p, size_t len, const char *want)
{
    if (p == NULL) {
        return want == NULL;
    }

    return want != NULL && len == strlen(want) && memcmp(p, want, len) == 0;
}


static void
good(const char *spec)
{
    char        err[P3X_SPEC_ERR_LEN];
    p3x_spec_t  sp;

    ok(parse(&sp, spec, err, sizeof(err)) == 0, "accepted", spec, err);
}


static void
bad(const char *spec, const char *want)
{
    int         rc;
    char        err[P3X_SPEC_ERR_LEN];
    p3x_spec_t  sp;

    rc = parse(&sp, spec, err, sizeof(err));

    ok(rc == -1 && strstr(err, want) != NULL, want, spec, err);
}


int
main(void)
{
    int           n;
    char          err[P3X_SPEC_ERR_LEN], tiny[8], big[1024];
    size_t        lens[4];
    const char   *argv[4];
    p3x_spec_t    sp;

    /* one Redis, and the defaults */

    n = parse(&sp, "127.0.0.1:6380", err, sizeof(err));
    ok(n == 0 && sp.mode == P3X_SPEC_SINGLE && sp.naddrs == 1
       && str_is(sp.addrs[0].host, sp.addrs[0].host_len, "127.0.0.1")
       && sp.addrs[0].port == 6380 && sp.addrs[0].path == NULL
       && str_is(sp.addrs[0].text, sp.addrs[0].text_len, "127.0.0.1:6380")
       && sp.tls == 0 && sp.user == NULL && sp.password == NULL
       && sp.wait == 0 && sp.wait_timeout_ms == 1000
       && sp.timeout_ms == 5000 && sp.connections == 2
       && sp.sentinel == NULL,
       "host:port and defaults", "127.0.0.1:6380", err);

    n = parse(&sp, "redis.example", err, sizeof(err));
    ok(n == 0 && sp.addrs[0].port == 6379
       && str_is(sp.addrs[0].host, sp.addrs[0].host_len, "redis.example"),
       "host alone: port 6379", "redis.example", err);

    n = parse(&sp, "[::1]:7000", err, sizeof(err));
    ok(n == 0 && sp.addrs[0].port == 7000
       && str_is(sp.addrs[0].host, sp.addrs[0].host_len, "::1"),
       "[ipv6]:port", "[::1]:7000", err);

    n = parse(&sp, "[2001:db8::5]", err, sizeof(err));
    ok(n == 0 && sp.addrs[0].port == 6379
       && str_is(sp.addrs[0].host, sp.addrs[0].host_len, "2001:db8::5"),
       "[ipv6] alone: port 6379", "[2001:db8::5]", err);

    n = parse(&sp, "unix:/run/redis/redis.sock connections=4", err,
              sizeof(err));
    ok(n == 0 && sp.addrs[0].host == NULL && sp.addrs[0].port == 0
       && str_is(sp.addrs[0].path, sp.addrs[0].path_len,
                 "/run/redis/redis.sock")
       && sp.connections == 4,
       "unix:/path", "unix:/run/redis/redis.sock connections=4", err);

    n = parse(&sp, "  10.0.0.5:6379 \t user=pop3  password=s3cret  ", err,
              sizeof(err));
    ok(n == 0 && str_is(sp.user, sp.user_len, "pop3")
       && str_is(sp.password, sp.password_len, "s3cret"),
       "user= password=, spaces and tabs", "10.0.0.5:6379 user= password=",
       err);

    /* cluster */

    n = parse(&sp, "127.0.0.1:7000 127.0.0.1:7001 cluster wait=1", err,
              sizeof(err));
    ok(n == 0 && sp.mode == P3X_SPEC_CLUSTER && sp.naddrs == 2
       && sp.addrs[1].port == 7001 && sp.wait == 1,
       "cluster seeds", "127.0.0.1:7000 127.0.0.1:7001 cluster wait=1", err);

    n = parse(&sp, "cluster 10.0.0.1", err, sizeof(err));
    ok(n == 0 && sp.mode == P3X_SPEC_CLUSTER && sp.naddrs == 1
       && sp.addrs[0].port == 6379,
       "cluster first, one seed", "cluster 10.0.0.1", err);

    /* sentinel */

    n = parse(&sp, "127.0.0.1:26380 10.0.0.2 sentinel=mymaster tls", err,
              sizeof(err));
    ok(n == 0 && sp.mode == P3X_SPEC_SENTINEL && sp.naddrs == 2
       && sp.addrs[0].port == 26380 && sp.addrs[1].port == 26379
       && str_is(sp.sentinel, sp.sentinel_len, "mymaster") && sp.tls == 1,
       "sentinels, default port 26379",
       "127.0.0.1:26380 10.0.0.2 sentinel=mymaster tls", err);

    /* times */

    n = parse(&sp, "h timeout=1m30s wait_timeout=250ms", err, sizeof(err));
    ok(n == 0 && sp.timeout_ms == 90000 && sp.wait_timeout_ms == 250,
       "times", "h timeout=1m30s wait_timeout=250ms", err);

    n = parse(&sp, "h timeout=7", err, sizeof(err));
    ok(n == 0 && sp.timeout_ms == 7000, "a bare number is seconds",
       "h timeout=7", err);

    n = parse(&sp, "h timeout=1h wait=16 connections=64", err, sizeof(err));
    ok(n == 0 && sp.timeout_ms == 3600000 && sp.wait == 16
       && sp.connections == 64, "the largest values",
       "h timeout=1h wait=16 connections=64", err);

    n = parse(&sp, "h wait=0", err, sizeof(err));
    ok(n == 0 && sp.wait == 0, "wait=0", "h wait=0", err);

    /* words need not end in NUL: the directive's do not */

    memcpy(big, "127.0.0.1:6390Xcluster", 22);
    argv[0] = big;
    lens[0] = 14;
    argv[1] = big + 15;
    lens[1] = 7;
    n = p3x_spec_parse(&sp, 2, argv, lens, err, sizeof(err));
    ok(n == 0 && sp.addrs[0].port == 6390 && sp.mode == P3X_SPEC_CLUSTER,
       "words by length", "127.0.0.1:6390|cluster", err);

    /* errors */

    bad("127.0.0.1:7000 127.0.0.1:7001",
        "more than one address needs cluster or sentinel=");
    bad("", "no address");
    bad("cluster", "no address");
    bad("h1 h2 cluster sentinel=m", "cluster and sentinel= exclude");
    bad("h foo=1", "invalid parameter \"foo=1\"");
    bad("h wait=17", "wait= needs a number 0..16");
    bad("h wait=x", "wait= needs a number 0..16");
    bad("h wait=", "wait= needs a number 0..16");
    bad("h wait=-1", "wait= needs a number 0..16");
    bad("h connections=0", "connections= needs a number 1..64");
    bad("h connections=65", "connections= needs a number 1..64");
    bad("h timeout=0", "timeout= needs a time above 0");
    bad("h timeout=5x", "timeout= needs a time above 0");
    bad("h timeout=30s1m", "timeout= needs a time above 0");
    bad("h timeout=100d", "timeout= needs a time above 0");
    bad("h timeout=", "timeout= needs a time above 0");
    bad("h wait_timeout=0s", "wait_timeout= needs a time above 0");
    bad("h user=u", "user= needs password=");
    bad("h password=", "password= needs a value");
    bad("h1 h2 sentinel=", "sentinel= needs a value");
    bad("h tls tls", "duplicate \"tls\"");
    bad("h wait=1 wait=2", "duplicate \"wait=\"");
    bad("h1 h2 cluster cluster", "duplicate \"cluster\"");
    bad("unix:/tmp/r.sock tls", "tls does not apply");
    bad("unix:", "no path in \"unix:\"");
    bad("::1", "an IPv6 address needs brackets");
    bad("fe80::1:6379", "an IPv6 address needs brackets");
    bad("h:0", "invalid port in \"h:0\"");
    bad("h:65536", "invalid port");
    bad("h:", "invalid port");
    bad("h:63a", "invalid port");
    bad(":6379", "no host");
    bad("[::1", "invalid address");
    bad("[]:6379", "invalid address");
    bad("[::1]x", "invalid address");
    bad("[::1]:", "invalid port");

    good("h1:1 h2:2 h3:3 h4:4 h5:5 h6:6 h7:7 h8:8 h9:9 h10:10 h11:11 "
         "h12:12 h13:13 h14:14 h15:15 h16:16 cluster");
    bad("h1:1 h2:2 h3:3 h4:4 h5:5 h6:6 h7:7 h8:8 h9:9 h10:10 h11:11 "
        "h12:12 h13:13 h14:14 h15:15 h16:16 h17:17 cluster",
        "more than 16 addresses");

    /* the error text is cut to fit, and always ends in NUL */

    memset(tiny, 'x', sizeof(tiny));
    n = p3x_spec_split("h foo=1", 7, argv, lens, 4);
    n = p3x_spec_parse(&sp, n, argv, lens, tiny, sizeof(tiny));
    ok(n == -1 && tiny[sizeof(tiny) - 1] == '\0'
       && strlen(tiny) == sizeof(tiny) - 1, "error cut to fit",
       "h foo=1", tiny);

    n = p3x_spec_parse(&sp, 0, argv, lens, NULL, 0);
    ok(n == -1, "no error buffer", "", "");

    /* split */

    n = p3x_spec_split(" a  b\tc ", 8, argv, lens, 4);
    ok(n == 3 && lens[0] == 1 && argv[1][0] == 'b' && lens[2] == 1,
       "split on spaces and tabs", " a  b\\tc ", "");

    n = p3x_spec_split("a b c d e", 9, argv, lens, 4);
    ok(n == -1, "split: too many words", "a b c d e", "");

    n = p3x_spec_split("   ", 3, argv, lens, 4);
    ok(n == 0, "split: nothing", "   ", "");

    printf("1..%d\n", test_n);

    return test_failed ? 1 : 0;
}
