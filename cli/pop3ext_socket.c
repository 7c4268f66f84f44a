
/*
 * Copyright (C) ngx_mail_pop3_ext_module developers
 *
 * pop3ext: the sockets of the Redis layer and of the POP3 client of
 * import, one code for both: a non-blocking TCP connection, TLS through
 * OpenSSL with verification, and sending and receiving with a deadline
 * on every wait.  Each caller keeps its own descriptor and SSL object;
 * a pop3ext_peer_t says how its messages name the other end.
 */


#include "pop3ext.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>


/*
 * A TLS context for a client: TLS 1.2 at least and, with verify, the
 * server's certificate checked against ca (NULL or "": the system's CAs).
 * *ctxp is set as soon as it exists, for the caller to free.
 */

int
pop3ext_tls_context(SSL_CTX **ctxp, const char *ca, int verify)
{
    SSL_CTX  *ctx;

    ctx = SSL_CTX_new(TLS_client_method());
    *ctxp = ctx;

    if (ctx == NULL) {
        pop3ext_error("cannot create a TLS context");
        return EX_SOFTWARE;
    }

    (void) SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);

    if (!verify) {
        return EX_OK;
    }

    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);

    if (ca != NULL && ca[0] != '\0') {
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
            pop3ext_error("cannot load the CA certificates \"%s\": %s", ca,
                          pop3ext_ssl_reason());
            return EX_CONFIG;
        }

    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        pop3ext_error("cannot load the system's CA certificates");
        return EX_CONFIG;
    }

    return EX_OK;
}


/* OpenSSL's reason for the last failure, for a message */

const char *
pop3ext_ssl_reason(void)
{
    unsigned long  e;
    const char    *r;

    static char    buf[256];

    e = ERR_peek_last_error();

    if (e == 0) {
        return "connection closed";
    }

    r = ERR_reason_error_string(e);

    if (r != NULL) {
        return r;
    }

    ERR_error_string_n(e, buf, sizeof(buf));

    return buf;
}


/*
 * A TCP connection to host:port, to each address in turn, by the
 * deadline; the socket is non-blocking, as every wait has a deadline.
 * name is host:port as messages show it.
 */

int
pop3ext_sock_connect(const pop3ext_peer_t *peer, const char *name,
    const char *host, unsigned port, unsigned long long deadline, int *fdp)
{
    int                  fd, err, one, rc;
    char                 service[16];
    socklen_t            len;
    struct addrinfo      hints, *res, *ai;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;

    snprintf(service, sizeof(service), "%u", port);

    rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        pop3ext_error("cannot resolve %s \"%s\": %s", peer->host, host,
                      gai_strerror(rc));
        return EX_TEMPFAIL;
    }

    err = 0;

    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family,
                    ai->ai_socktype|SOCK_CLOEXEC|SOCK_NONBLOCK,
                    ai->ai_protocol);
        if (fd == -1) {
            err = errno;
            continue;
        }

        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
            if (errno != EINPROGRESS) {
                err = errno;
                goto next;
            }

            if (pop3ext_sock_wait(fd, POLLOUT, deadline) != 0) {
                err = ETIMEDOUT;
                goto next;
            }

            len = sizeof(int);

            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) {
                err = errno;
            }

            if (err != 0) {
                goto next;
            }
        }

        /*
         * a command goes out whole and waits for its reply: no Nagle
         * delay behind its last segment
         */

        one = 1;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(int));

        freeaddrinfo(res);

        *fdp = fd;

        return EX_OK;

    next:

        close(fd);
    }

    freeaddrinfo(res);

    pop3ext_error("cannot connect to %s %s: %s", peer->at, name,
                  strerror(err ? err : ECONNREFUSED));

    return EX_TEMPFAIL;
}


/*
 * TLS on fd, by the deadline.  With verify, the certificate must name
 * host: an IP address is matched against the certificate's IP addresses,
 * a name against its DNS names; a name is sent as SNI in any case.  *sslp
 * is set as soon as it exists, for the caller to free.
 */

int
pop3ext_sock_tls(const pop3ext_peer_t *peer, const char *name, SSL_CTX *ctx,
    int fd, const char *host, int verify, unsigned long long deadline,
    SSL **sslp)
{
    int             rc, err;
    long            result;
    SSL            *ssl;
    unsigned char   ip[16];

    ssl = SSL_new(ctx);
    *sslp = ssl;

    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        pop3ext_error("cannot start TLS to %s %s", peer->at, name);
        return EX_TEMPFAIL;
    }

    if (inet_pton(AF_INET, host, ip) == 1
        || inet_pton(AF_INET6, host, ip) == 1)
    {
        rc = !verify
             || X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
                == 1;

    } else {
        rc = SSL_set_tlsext_host_name(ssl, host) == 1
             && (!verify || SSL_set1_host(ssl, host) == 1);
    }

    if (!rc) {
        pop3ext_error("cannot verify TLS names like \"%s\"", host);
        return EX_TEMPFAIL;
    }

    for ( ;; ) {
        ERR_clear_error();

        rc = SSL_connect(ssl);
        if (rc == 1) {
            return EX_OK;
        }

        err = SSL_get_error(ssl, rc);

        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
            break;
        }

        if (pop3ext_sock_wait(fd, err == SSL_ERROR_WANT_READ ? POLLIN
                                                             : POLLOUT,
                              deadline)
            != 0)
        {
            pop3ext_error("TLS handshake with %s %s: timed out", peer->at,
                          name);
            return EX_TEMPFAIL;
        }
    }

    result = SSL_get_verify_result(ssl);

    if (result != X509_V_OK) {
        pop3ext_error("TLS handshake with %s %s: certificate not verified "
                      "(%s, name \"%s\"%s)", peer->at, name,
                      X509_verify_cert_error_string(result), host,
                      peer->hint);

    } else {
        pop3ext_error("TLS handshake with %s %s failed: %s", peer->at, name,
                      pop3ext_ssl_reason());
    }

    return EX_TEMPFAIL;
}


/* 0 when the socket is ready, -1 when the deadline passed */

int
pop3ext_sock_wait(int fd, short events, unsigned long long deadline)
{
    int                  rc;
    struct pollfd        pfd;
    unsigned long long   now;

    for ( ;; ) {
        now = pop3ext_now();

        if (now >= deadline) {
            return -1;
        }

        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;

        rc = poll(&pfd, 1, (int) (deadline - now));

        if (rc > 0) {
            return 0;
        }

        if (rc == -1 && errno != EINTR) {
            return -1;
        }
    }
}


/* all of buf, through TLS if ssl is not NULL */

int
pop3ext_sock_send(const pop3ext_peer_t *peer, const char *name, int fd,
    SSL *ssl, const char *buf, size_t len, unsigned long long deadline)
{
    int       err;
    short     ev;
    ssize_t   sent;

    while (len > 0) {
        ev = POLLOUT;

        if (ssl != NULL) {
            ERR_clear_error();

            sent = SSL_write(ssl, buf, len > INT32_MAX ? INT32_MAX
                                                       : (int) len);
            if (sent <= 0) {
                err = SSL_get_error(ssl, (int) sent);

                if (err == SSL_ERROR_WANT_READ) {
                    ev = POLLIN;

                } else if (err != SSL_ERROR_WANT_WRITE) {
                    pop3ext_error("%s %s: TLS write failed: %s", peer->at,
                                  name, pop3ext_ssl_reason());
                    return EX_TEMPFAIL;
                }

                sent = -1;
                errno = EAGAIN;
            }

        } else {
            sent = send(fd, buf, len, MSG_NOSIGNAL);
        }

        if (sent == -1) {
            if (errno == EINTR) {
                continue;
            }

            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                pop3ext_error("%s %s: %s", peer->at, name, strerror(errno));
                return EX_TEMPFAIL;
            }

            if (pop3ext_sock_wait(fd, ev, deadline) != 0) {
                pop3ext_error("%s %s: timed out", peer->at, name);
                return EX_TEMPFAIL;
            }

            continue;
        }

        buf += sent;
        len -= sent;
    }

    return EX_OK;
}


/*
 * What arrives first, at most size octets, through TLS if ssl is not
 * NULL: the number of octets, 0 when the peer closed the connection,
 * POP3EXT_SOCK_ERROR (said), or POP3EXT_SOCK_TIMEDOUT (not said: each
 * caller says what it waited for).
 */

ssize_t
pop3ext_sock_recv(const pop3ext_peer_t *peer, const char *name, int fd,
    SSL *ssl, void *buf, size_t size, unsigned long long deadline)
{
    int       err;
    short     ev;
    ssize_t   got;

    for ( ;; ) {
        ev = POLLIN;

        if (ssl != NULL) {
            ERR_clear_error();

            got = SSL_read(ssl, buf, size > INT32_MAX ? INT32_MAX
                                                      : (int) size);
            if (got <= 0) {
                err = SSL_get_error(ssl, (int) got);

                if (err == SSL_ERROR_ZERO_RETURN
                    || err == SSL_ERROR_SYSCALL)
                {
                    return 0;
                }

                if (err == SSL_ERROR_WANT_WRITE) {
                    ev = POLLOUT;

                } else if (err != SSL_ERROR_WANT_READ) {
                    pop3ext_error("%s %s: TLS read failed: %s", peer->at,
                                  name, pop3ext_ssl_reason());
                    return POP3EXT_SOCK_ERROR;
                }

                got = -1;
                errno = EAGAIN;
            }

        } else {
            got = recv(fd, buf, size, 0);
        }

        if (got >= 0) {
            return got;
        }

        if (errno == EINTR) {
            continue;
        }

        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            pop3ext_error("%s %s: %s", peer->at, name, strerror(errno));
            return POP3EXT_SOCK_ERROR;
        }

        if (pop3ext_sock_wait(fd, ev, deadline) != 0) {
            return POP3EXT_SOCK_TIMEDOUT;
        }
    }
}
