
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * The Redis specification: which Redis to use and how, in one grammar for
 * the pop3_ext_redis directive and for pop3ext (-r SPEC, POP3EXT_REDIS).
 * Pure C: no nginx types, no allocation; the result points into the words
 * it was given, which must outlive it.
 *
 *   SPEC = ADDRESS... [cluster | sentinel=NAME] [tls] [user=USER]
 *          [password=PASSWORD] [wait=N] [wait_timeout=TIME]
 *          [timeout=TIME] [connections=N]
 *
 *   ADDRESS   host:port, host (port 6379; 26379 with sentinel=),
 *             [ipv6]:port, [ipv6], or unix:/path; up to 16
 *
 *   one ADDRESS, no mode   a single Redis
 *   cluster                the ADDRESSes are seed nodes of a Redis Cluster
 *   sentinel=NAME          the ADDRESSes are Sentinels that monitor the
 *                          master NAME
 *   tls                    TLS on every connection (not with unix:)
 *   user=, password=       AUTH [user] password on every connection
 *   wait=N                 a write that must be durable (a delivery, a
 *                          QUIT's commit, a user change) is acknowledged
 *                          only after WAIT N confirmed N replicas; 0..16,
 *                          default 0 (no WAIT)
 *   wait_timeout=TIME      how long WAIT waits; default 1s
 *   timeout=TIME           to connect, and to wait for a reply; default 5s
 *   connections=N          per nginx worker, 1..64; default 2
 *
 * More than one ADDRESS without cluster or sentinel= is an error: data is
 * never split by address.  A word with "=" is a parameter, "cluster" and
 * "tls" are keywords, anything else is an ADDRESS; a parameter or keyword
 * may appear once.  TIME is nginx's: a number with a unit, ms, s, m, h or
 * d, several of them from the largest down ("1m30s"); a bare number is
 * seconds.
 *
 * pop3ext takes the whole SPEC as one word and splits it on spaces and
 * tabs with p3x_spec_split() first, so a password with a space can only
 * be given to it in POP3EXT_REDIS_PASSWORD.
 */


#ifndef _NGX_MAIL_POP3_EXT_SPEC_H_INCLUDED_
#define _NGX_MAIL_POP3_EXT_SPEC_H_INCLUDED_


#include <stddef.h>
#include <stdio.h>
#include <string.h>


#define P3X_SPEC_ADDRS_MAX        16
#define P3X_SPEC_WORDS_MAX        32
#define P3X_SPEC_WAIT_MAX         16
#define P3X_SPEC_CONNECTIONS_MAX  64
#define P3X_SPEC_PORT             6379
#define P3X_SPEC_SENTINEL_PORT    26379
/* which words were seen, to refuse one given twice */
#define P3X_SPEC_SEEN_CLUSTER       0x0001
#define P3X_SPEC_SEEN_SENTINEL      0x0002
#define P3X_SPEC_SEEN_TLS           0x0004
#define P3X_SPEC_SEEN_USER          0x0008
#define P3X_SPEC_SEEN_PASSWORD      0x0010
#define P3X_SPEC_SEEN_WAIT          0x0020
#define P3X_SPEC_SEEN_WAIT_TIMEOUT  0x0040
#define P3X_SPEC_SEEN_TIMEOUT       0x0080
#define P3X_SPEC_SEEN_CONNECTIONS   0x0100
/* a useful size for the error buffer: messages are cut to fit */
#define P3X_SPEC_ERR_LEN          160
/* the longest TIME accepted, about 24 days: fits a signed 32-bit int */
#define P3X_SPEC_TIME_MAX         2147483647UL


typedef enum {
    P3X_SPEC_SINGLE = 0,
    P3X_SPEC_CLUSTER,
    P3X_SPEC_SENTINEL
} p3x_spec_mode_e;


typedef struct {
    const char         *text;           /* the ADDRESS as written */
    size_t              text_len;
    const char         *host;           /* NULL for unix:; no brackets */
    size_t              host_len;
    unsigned            port;           /* 0 for unix: */
    const char         *path;           /* unix: only, else NULL */
    size_t              path_len;
} p3x_spec_addr_t;


typedef struct {
    p3x_spec_mode_e     mode;
    const char         *sentinel;       /* the master's NAME, or NULL */
    size_t              sentinel_len;
    unsigned            tls;            /* 0 or 1 */
    const char         *user;           /* NULL: none */
    size_t              user_len;
    const char         *password;       /* NULL: no AUTH */
    size_t              password_len;
    unsigned            wait;           /* replicas WAIT needs; 0: none */
    unsigned long       wait_timeout_ms;
    unsigned long       timeout_ms;
    unsigned            connections;
    unsigned            seen;           /* P3X_SPEC_SEEN_*: words given */
    unsigned            naddrs;
    p3x_spec_addr_t     addrs[P3X_SPEC_ADDRS_MAX];
} p3x_spec_t;


/* static inline: a file that includes the header and calls none is fine */

static inline int p3x_spec_parse(p3x_spec_t *spec, int argc,
    const char *const *argv, const size_t *lens, char *err, size_t errlen);
static inline int p3x_spec_split(const char *s, size_t len,
    const char **argv, size_t *lens, int max);
static inline int p3x_spec_time(const char *p, size_t len,
    unsigned long *ms);
static inline int p3x_spec_number(const char *p, size_t len,
    unsigned long max, unsigned long *n);
static inline int p3x_spec_address(p3x_spec_addr_t *a, const char *p,
    size_t len, char *err, size_t errlen);
static inline int p3x_spec_is(const char *w, size_t klen, const char *key);


/*
 * Parses argc words (argv[i] of lens[i] octets, not necessarily
 * NUL-terminated) into *spec.  Returns 0, or -1 with a message in err
 * (always NUL-terminated when errlen > 0), such as
 *   more than one address needs cluster or sentinel=
 *   invalid parameter "foo=1"
 *   wait= needs a number 0..16
 */

static inline int
p3x_spec_parse(p3x_spec_t *spec, int argc, const char *const *argv,
    const size_t *lens, char *err, size_t errlen)
{
    int             i, cluster;
    size_t          len, klen, vlen;
    unsigned        k, seen, bit;
    const char     *w, *eq, *v;
    unsigned long   n;

    memset(spec, 0, sizeof(p3x_spec_t));

    spec->wait_timeout_ms = 1000;
    spec->timeout_ms = 5000;
    spec->connections = 2;

    if (errlen > 0) {
        err[0] = '\0';
    }

    /* what was given, to refuse a word given twice */

    seen = 0;
    cluster = 0;

    for (i = 0; i < argc; i++) {
        w = argv[i];
        len = lens[i];

        if (len == 0) {
            snprintf(err, errlen, "empty parameter");
            return -1;
        }

        eq = memchr(w, '=', len);

        if (eq == NULL || (len >= 5 && memcmp(w, "unix:", 5) == 0)) {

            if (len == 7 && memcmp(w, "cluster", 7) == 0) {
                bit = P3X_SPEC_SEEN_CLUSTER;
                cluster = 1;

            } else if (len == 3 && memcmp(w, "tls", 3) == 0) {
                bit = P3X_SPEC_SEEN_TLS;
                spec->tls = 1;

            } else {
                if (spec->naddrs == P3X_SPEC_ADDRS_MAX) {
                    snprintf(err, errlen, "more than %d addresses",
                             P3X_SPEC_ADDRS_MAX);
                    return -1;
                }

                if (p3x_spec_address(&spec->addrs[spec->naddrs], w, len,
                                     err, errlen)
                    != 0)
                {
                    return -1;
                }

                spec->naddrs++;
                continue;
            }

            if (seen & bit) {
                snprintf(err, errlen, "duplicate \"%.*s\"", (int) len, w);
                return -1;
            }

            seen |= bit;
            continue;
        }

        klen = eq - w + 1;
        v = eq + 1;
        vlen = len - klen;

        if (p3x_spec_is(w, klen, "sentinel=")) {
            bit = P3X_SPEC_SEEN_SENTINEL;
            spec->sentinel = v;
            spec->sentinel_len = vlen;

        } else if (p3x_spec_is(w, klen, "user=")) {
            bit = P3X_SPEC_SEEN_USER;
            spec->user = v;
            spec->user_len = vlen;

        } else if (p3x_spec_is(w, klen, "password=")) {
            bit = P3X_SPEC_SEEN_PASSWORD;
            spec->password = v;
            spec->password_len = vlen;

        } else if (p3x_spec_is(w, klen, "wait=")) {
            bit = P3X_SPEC_SEEN_WAIT;

            if (p3x_spec_number(v, vlen, P3X_SPEC_WAIT_MAX, &n) != 0) {
                snprintf(err, errlen, "wait= needs a number 0..%d",
                         P3X_SPEC_WAIT_MAX);
                return -1;
            }

            spec->wait = (unsigned) n;

        } else if (p3x_spec_is(w, klen, "wait_timeout=")) {
            bit = P3X_SPEC_SEEN_WAIT_TIMEOUT;

            if (p3x_spec_time(v, vlen, &spec->wait_timeout_ms) != 0) {
                snprintf(err, errlen, "wait_timeout= needs a time above 0, "
                         "such as 1s or 500ms");
                return -1;
            }

        } else if (p3x_spec_is(w, klen, "timeout=")) {
            bit = P3X_SPEC_SEEN_TIMEOUT;

            if (p3x_spec_time(v, vlen, &spec->timeout_ms) != 0) {
                snprintf(err, errlen, "timeout= needs a time above 0, "
                         "such as 5s or 500ms");
                return -1;
            }

        } else if (p3x_spec_is(w, klen, "connections=")) {
            bit = P3X_SPEC_SEEN_CONNECTIONS;

            if (p3x_spec_number(v, vlen, P3X_SPEC_CONNECTIONS_MAX, &n) != 0
                || n == 0)
            {
                snprintf(err, errlen, "connections= needs a number 1..%d",
                         P3X_SPEC_CONNECTIONS_MAX);
                return -1;
            }

            spec->connections = (unsigned) n;

        } else {
            snprintf(err, errlen, "invalid parameter \"%.*s\"", (int) len,
                     w);
            return -1;
        }

        if (seen & bit) {
            snprintf(err, errlen, "duplicate \"%.*s\"", (int) klen, w);
            return -1;
        }

        seen |= bit;

        /* the string parameters: an empty one is a mistake, not "none" */

        if (vlen == 0
            && (bit == P3X_SPEC_SEEN_SENTINEL || bit == P3X_SPEC_SEEN_USER
                || bit == P3X_SPEC_SEEN_PASSWORD))
        {
            snprintf(err, errlen, "%.*s needs a value", (int) klen, w);
            return -1;
        }
    }

    if (spec->naddrs == 0) {
        snprintf(err, errlen, "no address");
        return -1;
    }

    if (cluster && spec->sentinel != NULL) {
        snprintf(err, errlen, "cluster and sentinel= exclude each other");
        return -1;
    }

    spec->seen = seen;
    spec->mode = cluster ? P3X_SPEC_CLUSTER
                         : spec->sentinel ? P3X_SPEC_SENTINEL
                                          : P3X_SPEC_SINGLE;

    if (spec->naddrs > 1 && spec->mode == P3X_SPEC_SINGLE) {
        snprintf(err, errlen, "more than one address needs cluster or "
                 "sentinel=");
        return -1;
    }

    if (spec->user != NULL && spec->password == NULL) {
        snprintf(err, errlen, "user= needs password=");
        return -1;
    }

    for (k = 0; k < spec->naddrs; k++) {
        if (spec->addrs[k].path != NULL) {
            if (spec->tls) {
                snprintf(err, errlen, "tls does not apply to \"%.*s\"",
                         (int) spec->addrs[k].text_len,
                         spec->addrs[k].text);
                return -1;
            }

            continue;
        }

        if (spec->addrs[k].port == 0) {
            spec->addrs[k].port = (spec->mode == P3X_SPEC_SENTINEL)
                                  ? P3X_SPEC_SENTINEL_PORT : P3X_SPEC_PORT;
        }
    }

    return 0;
}


/* is the word up to and with its "=" (klen octets) this key? */

static inline int
p3x_spec_is(const char *w, size_t klen, const char *key)
{
    return klen == strlen(key) && memcmp(w, key, klen) == 0;
}


/*
 * host:port, host, [ipv6]:port, [ipv6] or unix:/path; a port of 0 is set
 * to the mode's default by the caller.
 */

static inline int
p3x_spec_address(p3x_spec_addr_t *a, const char *p, size_t len, char *err,
    size_t errlen)
{
    size_t          i, colons;
    const char     *end, *c;
    unsigned long   port;

    memset(a, 0, sizeof(p3x_spec_addr_t));

    a->text = p;
    a->text_len = len;

    if (len >= 5 && memcmp(p, "unix:", 5) == 0) {
        if (len == 5) {
            snprintf(err, errlen, "no path in \"unix:\"");
            return -1;
        }

        a->path = p + 5;
        a->path_len = len - 5;

        return 0;
    }

    end = p + len;

    if (p[0] == '[') {
        c = memchr(p, ']', len);

        if (c == NULL || c == p + 1) {
            snprintf(err, errlen, "invalid address \"%.*s\"", (int) len, p);
            return -1;
        }

        a->host = p + 1;
        a->host_len = c - p - 1;
        c++;

        if (c == end) {
            return 0;
        }

        if (*c != ':') {
            snprintf(err, errlen, "invalid address \"%.*s\"", (int) len, p);
            return -1;
        }

    } else {
        colons = 0;
        c = NULL;

        for (i = 0; i < len; i++) {
            if (p[i] == ':') {
                colons++;
                c = p + i;
            }
        }

        if (colons > 1) {
            snprintf(err, errlen, "an IPv6 address needs brackets, as in "
                     "[::1]:6379: \"%.*s\"", (int) len, p);
            return -1;
        }

        a->host = p;
        a->host_len = (c != NULL) ? (size_t) (c - p) : len;

        if (a->host_len == 0) {
            snprintf(err, errlen, "no host in \"%.*s\"", (int) len, p);
            return -1;
        }

        if (c == NULL) {
            return 0;
        }
    }

    /* c points to the ':' before the port */

    if (p3x_spec_number(c + 1, end - c - 1, 65535, &port) != 0
        || port == 0)
    {
        snprintf(err, errlen, "invalid port in \"%.*s\"", (int) len, p);
        return -1;
    }

    a->port = (unsigned) port;

    return 0;
}


/* a decimal number of 1 to 9 digits, at most max */

static inline int
p3x_spec_number(const char *p, size_t len, unsigned long max,
    unsigned long *n)
{
    size_t          i;
    unsigned long   v;

    if (len == 0 || len > 9) {
        return -1;
    }

    v = 0;

    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }

        v = v * 10 + (p[i] - '0');
    }

    if (v > max) {
        return -1;
    }

    *n = v;

    return 0;
}


/*
 * nginx's time syntax, in milliseconds: "500ms", "5s", "1m30s", "2h",
 * "1d"; a bare number is seconds.  Units go from the largest down, each
 * once; the total must be above 0 and at most P3X_SPEC_TIME_MAX.
 */

static inline int
p3x_spec_time(const char *p, size_t len, unsigned long *ms)
{
    size_t               i;
    unsigned             rank, last;
    unsigned long long   v, total, scale;

    total = 0;
    last = 6;
    i = 0;

    if (len == 0) {
        return -1;
    }

    while (i < len) {
        v = 0;

        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }

        while (i < len && p[i] >= '0' && p[i] <= '9') {
            v = v * 10 + (p[i++] - '0');

            if (v > P3X_SPEC_TIME_MAX) {
                return -1;
            }
        }

        if (i == len) {
            scale = 1000;
            rank = 1;

        } else if (p[i] == 'm' && i + 1 < len && p[i + 1] == 's') {
            scale = 1;
            rank = 0;
            i += 2;

        } else {
            switch (p[i]) {
            case 'd':
                scale = 86400000;
                rank = 4;
                break;
            case 'h':
                scale = 3600000;
                rank = 3;
                break;
            case 'm':
                scale = 60000;
                rank = 2;
                break;
            case 's':
                scale = 1000;
                rank = 1;
                break;
            default:
                return -1;
            }

            i++;
        }

        if (rank >= last) {
            return -1;
        }

        last = rank;
        total += v * scale;

        if (total > P3X_SPEC_TIME_MAX) {
            return -1;
        }
    }

    if (total == 0) {
        return -1;
    }

    *ms = (unsigned long) total;

    return 0;
}


/*
 * Splits s (len octets) on spaces and tabs into at most max words.
 * Returns their number, or -1 if there are more than max.
 */

static inline int
p3x_spec_split(const char *s, size_t len, const char **argv, size_t *lens,
    int max)
{
    int      n;
    size_t   i, start;

    n = 0;
    i = 0;

    for ( ;; ) {
        while (i < len && (s[i] == ' ' || s[i] == '\t')) {
            i++;
        }

        if (i == len) {
            return n;
        }

        start = i;

        while (i < len && s[i] != ' ' && s[i] != '\t') {
            i++;
        }

        if (n == max) {
            return -1;
        }

        argv[n] = s + start;
        lens[n] = i - start;
        n++;
    }
}


#endif /* _NGX_MAIL_POP3_EXT_SPEC_H_INCLUDED_ */
